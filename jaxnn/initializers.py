"""Weight initializers: random starting values for a layer's weights and biases.

Every initializer has the signature ``init(key, shape, dtype=jnp.float32) -> array``
and takes an explicit PRNG key: no global seed. For a weight matrix of shape
``(fan_in, fan_out)`` the variance-scaling initializers keep the signal's variance
roughly constant from layer to layer, which is what makes deep nets trainable from a
random start. This module does not build layers (see ``jaxnn.mlp``).
"""

from collections.abc import Callable

import jax

Initializer = Callable[..., jax.Array]

he_normal = jax.nn.initializers.he_normal()
he_normal.__doc__ = "He (Kaiming) normal: std sqrt(2 / fan_in). For relu-like layers."
he_uniform = jax.nn.initializers.he_uniform()
he_uniform.__doc__ = "He (Kaiming) uniform: limit sqrt(6 / fan_in). For relu-like layers."
glorot_normal = jax.nn.initializers.glorot_normal()
glorot_normal.__doc__ = "Glorot (Xavier) normal: std sqrt(2 / (fan_in + fan_out))."
glorot_uniform = jax.nn.initializers.glorot_uniform()
glorot_uniform.__doc__ = "Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out))."
lecun_normal = jax.nn.initializers.lecun_normal()
lecun_normal.__doc__ = "LeCun normal: std sqrt(1 / fan_in). For selu/elu-like layers."
zeros = jax.nn.initializers.zeros


def normal(stddev: float = 0.01) -> Initializer:
    """Returns an initializer drawing from N(0, stddev**2).

    Example:
      >>> w = normal(0.1)(jax.random.key(0), (3, 4))
      >>> w.shape
      (3, 4)
    """
    if not stddev > 0:
        raise ValueError(f"stddev must be > 0, got {stddev}")
    return jax.nn.initializers.normal(stddev)


INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "lecun_normal": lecun_normal,
    "zeros": zeros,
    "normal": normal(),
}

# He for relu-like activations (they zero half the signal, so double the variance);
# Glorot for the saturating ones, whose linear region around 0 must be kept.
_DEFAULT_FOR = {
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "softplus": "he_normal",
}


def default_initializer(activation_name: str) -> Initializer:
    """The default weight initializer for a layer followed by ``activation_name``.

    He normal for relu, leaky_relu, elu, gelu and softplus; Glorot normal otherwise
    (sigmoid, tanh, identity, softmax, ...).
    """
    return INITIALIZERS[_DEFAULT_FOR.get(activation_name, "glorot_normal")]


# How each named variance-scaling initializer sets its scale (its draws scale with 1 / sqrt(fan)): by
# fan_in, or by the mean of fan_in and fan_out. jaxnn.search narrows a layer's initial weights with it.
FAN_MODE = {
    id(he_normal): "fan_in",
    id(he_uniform): "fan_in",
    id(lecun_normal): "fan_in",
    id(glorot_normal): "fan_avg",
    id(glorot_uniform): "fan_avg",
}


def get_initializer(init: str | Initializer) -> Initializer:
    """Looks up an initializer by name, or passes a callable through."""
    if isinstance(init, str):
        try:
            return INITIALIZERS[init]
        except KeyError:
            raise ValueError(
                f"unknown initializer {init!r}; expected one of {sorted(INITIALIZERS)} or a callable(key, shape, dtype)"
            ) from None
    if callable(init):
        return init
    raise TypeError(f"init must be a name or a callable, got {type(init).__name__}")
