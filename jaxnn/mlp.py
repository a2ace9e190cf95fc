"""The multilayer perceptron: a model as a pair of pure functions.

``mlp(sizes)`` returns a :class:`Model` holding ``init(key) -> params`` and
``apply(params, x) -> y``. ``params`` is a plain pytree, a list with one
``{"w": (n_in, n_out), "b": (n_out,)}`` dict per layer, so the seed's weight matrix
W1 is ``params[0]["w"]``. Training lives in ``jaxnn.train``; this module only builds
and evaluates the network.
"""

import dataclasses
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._checks import MAX_ELEMENTS
from jaxnn.activations import Activation, activation_name, get_activation
from jaxnn.initializers import Initializer, default_initializer, get_initializer

Params = Any  # a pytree of arrays


class Model(NamedTuple):
    """A model: two pure functions, and a JSON-able description of its shape.

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, x) -> y``; ``x`` of shape ``(batch, features)`` or
        ``(features,)``.
      spec: a JSON-able dict describing the architecture (stored in checkpoints), or
        ``None`` for a model built by hand.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    spec: dict | None = None


@dataclasses.dataclass(frozen=True)
class MLPApply:
    """``apply(params, x)`` of an MLP. Equal and hashable by value, so two identical
    networks share one compiled training program."""

    activations: tuple[Activation, ...]  # one per layer, the last is the output's

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        check_mlp_input(params, x, len(self.activations))
        a = x
        for layer, act in zip(params, self.activations, strict=True):
            # Z = A_prev . W + b, then A = act(Z): the seed's forward propagation
            # (b added to every row by an explicit reshape, never a silent broadcast).
            z = a @ layer["w"]
            a = act(z + layer["b"].reshape((1,) * (z.ndim - 1) + layer["b"].shape))
        return a


def check_mlp_input(params: Params, x: jax.Array, depth: int) -> None:
    """Raises when ``params`` is not an MLP of ``depth`` layers or ``x`` does not fit."""
    if not isinstance(params, list | tuple) or len(params) != depth:
        raise ValueError(
            f"params must be a list of {depth} layers ({{'w', 'b'}} dicts), got "
            f"{type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}"
        )
    n_in = params[0]["w"].shape[0]
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"x must be a numeric (int or float) array, got dtype {dtype}")
    if jnp.ndim(x) not in (1, 2):
        raise ValueError(f"x must have shape (batch, {n_in}) or ({n_in},), got shape {jnp.shape(x)}")
    if jnp.shape(x)[-1] != n_in:
        raise ValueError(
            f"x has {jnp.shape(x)[-1]} features but the first layer expects {n_in}: "
            f"expected shape (batch, {n_in}) or ({n_in},), got {jnp.shape(x)}"
        )


def mlp(
    sizes: Sequence[int],
    activation: str | Activation = "relu",
    output_activation: str | Activation | None = None,
    *,
    init: str | Initializer | None = None,
    bias_init: str | Initializer = "zeros",
    dtype: Any = jnp.float32,
) -> Model:
    """Builds a multilayer perceptron.

    Args:
      sizes: layer widths from input to output, e.g. ``[3, 4, 4, 1]``: 3 input
        features, two hidden layers of 4 neurons, 1 output (1 for regression, one per
        class for classification).
      activation: the hidden layers' activation (name or callable); ``"relu"``.
      output_activation: the output layer's activation; ``None`` is the identity
        (raw values or logits). The seed's network uses ``"sigmoid"``.
      init: weight initializer (name or callable); default by activation (He for
        relu-like, Glorot otherwise, see ``jaxnn.initializers``).
      bias_init: bias initializer; zeros.
      dtype: parameter dtype.

    Returns:
      A :class:`Model`. ``model.apply(params, x)`` maps ``(batch, sizes[0])`` to
      ``(batch, sizes[-1])`` and ``(sizes[0],)`` to ``(sizes[-1],)``.

    Example:
      >>> model = mlp([3, 4, 4, 1], output_activation="sigmoid")
      >>> params = model.init(jax.random.key(0))
      >>> params[0]["w"].shape
      (3, 4)
      >>> model.apply(params, jnp.ones((100, 3))).shape
      (100, 1)
    """
    sizes = _check_sizes(sizes)
    hidden = get_activation(activation)
    out = get_activation(output_activation)
    acts = (hidden,) * (len(sizes) - 2) + (out,)
    inits = [get_initializer(init) if init is not None else default_initializer(activation_name(a)) for a in acts]
    binit = get_initializer(bias_init)

    def init_fn(key: jax.Array) -> Params:
        keys = jax.random.split(key, len(acts))
        return [
            {"w": w_init(k, (n_in, n_out), dtype), "b": binit(jax.random.fold_in(k, 1), (n_out,), dtype)}
            for k, w_init, n_in, n_out in zip(keys, inits, sizes[:-1], sizes[1:], strict=True)
        ]

    spec = {
        "kind": "mlp",
        "sizes": list(sizes),
        "activation": activation_name(hidden),
        "output_activation": activation_name(out),
    }
    return Model(init_fn, MLPApply(acts), spec)


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints like [3, 4, 4, 1], got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {list(sizes)}")
    out = []
    for i, s in enumerate(sizes):
        try:
            s = operator.index(s)
        except TypeError:
            raise TypeError(f"sizes[{i}] must be an int, got {s!r}") from None
        if s < 1:
            raise ValueError(f"sizes[{i}] must be >= 1, got {s}")
        if out and out[-1] * s > MAX_ELEMENTS:
            raise ValueError(
                f"layer {i} would have {out[-1]} x {s} weights; at most {MAX_ELEMENTS} per layer (sizes={list(sizes)})"
            )
        out.append(s)
    return out


def count_params(params: Params) -> int:
    """The number of scalars in a params pytree (weights plus biases)."""
    return sum(int(jnp.size(p)) for p in jax.tree.leaves(params))
