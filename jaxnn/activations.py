"""Activation functions, and look-up by name.

Each activation acts elementwise (softmax and log_softmax act along the last axis)
and is a plain ``jax.numpy`` function, so it works on a single example or a batch.
This module is for the activations an MLP layer applies; it is not a layer library.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def identity(x: jax.Array) -> jax.Array:
    """Returns ``x`` unchanged. Range: all reals. The usual regression output."""
    return x


def relu(x: jax.Array) -> jax.Array:
    """``max(x, 0)``: the input if positive, else zero. Range: [0, inf)."""
    return jax.nn.relu(x)


def leaky_relu(x: jax.Array) -> jax.Array:
    """``x`` if positive, else ``0.01 * x``. Range: all reals."""
    return jax.nn.leaky_relu(x, negative_slope=0.01)


def elu(x: jax.Array) -> jax.Array:
    """``x`` if positive, else ``exp(x) - 1``. Range: (-1, inf)."""
    return jax.nn.elu(x)


def gelu(x: jax.Array) -> jax.Array:
    """Gaussian error linear unit (tanh approximation). Range: about (-0.17, inf)."""
    return jax.nn.gelu(x, approximate=True)


def sigmoid(x: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))``. Range: (0, 1).

    The seed text says the sigmoid "fits a number between -1 and 1"; it maps to
    (0, 1), which is why it suits a probability or a target scaled to (0, 1).
    """
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent. Range: (-1, 1) (the range the seed gave the sigmoid)."""
    return jnp.tanh(x)


def softplus(x: jax.Array) -> jax.Array:
    """``log(1 + exp(x))``, a smooth relu. Range: (0, inf)."""
    return jax.nn.softplus(x)


def softmax(x: jax.Array) -> jax.Array:
    """Exponentials normalised along the last axis. Range: (0, 1), rows sum to 1."""
    return jax.nn.softmax(x, axis=-1)


def log_softmax(x: jax.Array) -> jax.Array:
    """Logarithm of :func:`softmax`, computed stably. Range: (-inf, 0)."""
    return jax.nn.log_softmax(x, axis=-1)


ACTIVATIONS: dict[str, Activation] = {
    f.__name__: f
    for f in (identity, relu, leaky_relu, elu, gelu, sigmoid, tanh, softplus, softmax, log_softmax)
}


def get_activation(activation: str | Activation | None) -> Activation:
    """Looks up an activation by name, or passes a callable through.

    Args:
      activation: a name from ``ACTIVATIONS`` (``"relu"``, ``"sigmoid"``, ...), a
        callable, or ``None`` (meaning :func:`identity`).

    Returns:
      The activation function.

    Example:
      >>> get_activation("relu")(jnp.array([-1.0, 2.0])).tolist()
      [0.0, 2.0]
    """
    if activation is None:
        return identity
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)} or a callable"
            ) from None
    if callable(activation):
        return activation
    raise TypeError(f"activation must be a name or a callable, got {type(activation).__name__}")


def activation_name(activation: Activation) -> str:
    """The name an activation is registered under, or its ``__name__``."""
    for name, fn in ACTIVATIONS.items():
        if fn is activation:
            return name
    return getattr(activation, "__name__", repr(activation))
