"""The multilayer perceptron: a model as a pair of pure functions.

``mlp(sizes)`` returns a :class:`Model` holding ``init(key) -> params`` and
``apply(params, x) -> y``. ``params`` is a plain pytree, a list with one
``{"w": (n_in, n_out), "b": (n_out,)}`` dict per layer, so the seed's weight matrix
W1 is ``params[0]["w"]``. Training lives in ``jaxnn.train``; this module only builds
and evaluates the network.

Dropout and normalisation make a hidden layer ``Z = A_prev · W + b``, then
``norm(Z)`` (scaled by ``scale`` and shifted by ``offset``, two more params per
neuron), then the activation, then dropout. Batch norm keeps running statistics:
such a network's ``init`` returns Flax-style variables ``{"params": [...],
"batch_stats": [{"mean", "var"} per hidden layer]}``, ``apply`` is the inference
mode (running statistics, no dropout), and ``apply.train_apply(variables, x, key)``
the training mode ``fit`` uses (batch statistics, dropout with ``key``).
"""

import dataclasses
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import _programs
from jaxnn._checks import MAX_ELEMENTS, check_mlp_input
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


NORMS = ("batch", "layer")
BATCH_NORM_MOMENTUM = 0.9  # running = 0.9 * running + 0.1 * batch (PyTorch's 0.1)
NORM_EPSILON = 1e-5


def _row(v: jax.Array, like: jax.Array) -> jax.Array:
    """``v`` (features,) shaped to meet ``like`` (..., features): explicit, never a silent broadcast."""
    return v.reshape((1,) * (like.ndim - 1) + v.shape)


@dataclasses.dataclass(frozen=True)
class MLPApply:
    """``apply(params, x)`` of an MLP. Equal and hashable by value, so two identical
    networks share one compiled training program."""

    activations: tuple[Activation, ...]  # one per layer, the last is the output's
    norm: str | None = None  # "batch", "layer" or None, in every hidden layer
    dropout: tuple[float, ...] = ()  # a rate per hidden layer (training only)
    # jaxnn.search's activation choices: the hidden layers' activation is the one
    # variables["activation"] indexes
    hidden_options: tuple[Activation, ...] = ()

    def __call__(self, variables, x: jax.Array) -> jax.Array:
        return self.layers(variables, x)[-1][1]

    def split(self, variables) -> tuple[Params, Any]:
        """``(params, batch_stats)``; ``batch_stats`` is ``None`` without batch norm.
        Variables may also hold ``dropout_rate`` (``fit_many``'s dropout sweep),
        ``width`` (``jaxnn.search``: the hidden units past it output 0), ``depth``
        (``jaxnn.search``: the hidden layers past it pass their input on unchanged)
        and ``activation`` (``jaxnn.search``: an index into ``hidden_options``)."""
        if isinstance(variables, dict) and "params" in variables:
            params, stats = variables["params"], variables.get("batch_stats")
        else:
            params, stats = variables, None
        if self.norm == "batch" and stats is None:
            raise ValueError(
                "a batch-norm MLP takes its variables from model.init(key): {'params': ..., 'batch_stats': ...}, "
                f"got {type(variables).__name__}"
            )
        return params, stats

    def layers(self, variables, x: jax.Array, key=None, batch_stats: bool = False) -> list:
        """``[(Z, A), ...]`` per layer (``Z = A_prev · W + b``, before any norm), in
        inference mode by default; ``key`` applies dropout and ``batch_stats``
        normalises by the batch's statistics (training)."""
        params, stats = self.split(variables)
        swept = variables.get("dropout_rate") if isinstance(variables, dict) else None
        width = variables.get("width") if isinstance(variables, dict) else None
        chosen = variables.get("activation") if isinstance(variables, dict) else None
        depth = variables.get("depth") if isinstance(variables, dict) else None
        check_mlp_input(params, x, len(self.activations))
        out, a = [], x
        for i, (layer, act) in enumerate(zip(params, self.activations, strict=True)):
            before = a
            # Z = A_prev . W + b, then A = act(Z): the seed's forward propagation
            # (b added to every row by an explicit reshape, never a silent broadcast).
            z = a @ layer["w"]
            z = z + _row(layer["b"], z)
            hidden, linear = i < len(params) - 1, z
            if hidden and self.norm is not None:
                if self.norm == "layer":
                    mean, var = z.mean(axis=-1, keepdims=True), z.var(axis=-1, keepdims=True)
                elif batch_stats:
                    mean, var = _row(z.mean(axis=0), z), _row(z.var(axis=0), z)
                else:
                    mean, var = _row(stats[i]["mean"], z), _row(stats[i]["var"], z)
                z = (z - mean) * jax.lax.rsqrt(var + NORM_EPSILON) * _row(layer["scale"], z) + _row(
                    layer["offset"], z
                )
            if hidden and chosen is not None and self.hidden_options:
                a = jax.lax.switch(chosen, self.hidden_options, z)
            else:
                a = act(z)
            if hidden and key is not None and self.dropout and self.dropout[i] > 0:
                keep = 1.0 - (self.dropout[i] if swept is None else swept)
                # drawn unit-major: a unit's mask does not depend on the units after it, so
                # a width search's trial masks its first units as the narrow network does
                units_first = (a.shape[-1], *a.shape[:-1])
                mask = jax.random.bernoulli(jax.random.fold_in(key, i), keep, units_first)
                a = jnp.where(jnp.moveaxis(mask, 0, -1), a / keep, 0.0)
            # a narrower network inside this one: its gradients stay 0 too
            if hidden and width is not None:
                keep = (jnp.arange(a.shape[-1]) < width).astype(a.dtype)
                a = a * keep.reshape((1,) * (a.ndim - 1) + keep.shape)
            # a shallower network inside this one: the layers past it pass its output on
            if hidden and i > 0 and depth is not None:
                a = jnp.where(i < depth, a, before)
            out.append((linear, a))
        return out


@dataclasses.dataclass(frozen=True)
class MLPTrainApply(MLPApply):
    """An MLP with dropout or batch norm: ``__call__`` is the inference mode and
    :meth:`train_apply` the training mode."""

    def train_apply(self, variables, x: jax.Array, key: jax.Array):
        """``(y, updated collections)``: dropout with ``key``, batch statistics, and
        the running statistics moved towards them."""
        train = self.norm == "batch"
        out = self.layers(variables, x, key, batch_stats=train)
        if not train:
            return out[-1][1], {}
        m = BATCH_NORM_MOMENTUM
        # the running mean and variance of each hidden layer's Z (recomputed here; XLA fuses
        # it with the forward pass)
        stats = [
            {
                "mean": m * s["mean"] + (1 - m) * z.mean(axis=0),
                "var": m * s["var"] + (1 - m) * z.var(axis=0),
            }
            for s, (z, _) in zip(variables["batch_stats"], out[:-1], strict=True)
        ]
        return out[-1][1], {"batch_stats": stats}


def mlp(
    sizes: Sequence[int],
    activation: str | Activation = "relu",
    output_activation: str | Activation | None = None,
    *,
    init: str | Initializer | None = None,
    bias_init: str | Initializer = "zeros",
    dtype: Any = jnp.float32,
    dropout: float | Sequence[float] = 0.0,
    norm: str | None = None,
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
      dropout: the rate of dropout after each hidden layer's activation (one rate, or
        one per hidden layer), in [0, 1); applied in training only, with the kept
        activations scaled by 1 / (1 - rate).
      norm: ``"batch"`` (batch norm: batch statistics in training, running ones in
        inference) or ``"layer"`` (layer norm) before each hidden activation; ``None``.

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
    rates = _check_dropout(dropout, len(sizes) - 2)
    if norm is not None and norm not in NORMS:
        raise ValueError(f"norm must be None or one of {list(NORMS)}, got {norm!r}")
    hidden = get_activation(activation)
    out = get_activation(output_activation)
    acts = (hidden,) * (len(sizes) - 2) + (out,)
    inits = [
        get_initializer(init) if init is not None else default_initializer(activation_name(a))
        for a in acts
    ]
    binit = get_initializer(bias_init)

    make = _Init(acts, tuple(inits), binit, tuple(sizes), norm, dtype)
    # jaxnn.search rebuilds narrower networks from the spec: with a named (or the default) initializer only
    rebuilt = (
        (init is None or isinstance(init, str)) and bias_init == "zeros" and dtype == jnp.float32
    )
    init_fn = _Initializer(make, rebuilt)
    spec = {
        "kind": "mlp",
        "sizes": list(sizes),
        "activation": activation_name(hidden),
        "output_activation": activation_name(out),
    }
    if norm is not None or any(rates):
        spec.update(norm=norm, dropout=list(rates))
    if isinstance(init, str):
        spec["init"] = init
    kind = MLPTrainApply if norm == "batch" or any(rates) else MLPApply
    return Model(init_fn, kind(acts, norm, rates if any(rates) else ()), spec)


@dataclasses.dataclass(frozen=True)
class _Init:
    """``mlp``'s initialisation: a value, so an equal network built again finds its
    compiled program (a closure would be a new program each time)."""

    acts: tuple
    inits: tuple
    binit: Any
    sizes: tuple
    norm: str | None
    dtype: Any

    def __call__(self, key: jax.Array) -> Params:
        keys = jax.random.split(key, len(self.acts))
        sizes, dtype = self.sizes, self.dtype
        params = [
            {
                "w": w_init(k, (n_in, n_out), dtype),
                "b": self.binit(jax.random.fold_in(k, 1), (n_out,), dtype),
            }
            for k, w_init, n_in, n_out in zip(keys, self.inits, sizes[:-1], sizes[1:], strict=True)
        ]
        for layer, n in zip(params[:-1], sizes[1:-1], strict=True):
            if self.norm is not None:
                layer.update(scale=jnp.ones((n,), dtype), offset=jnp.zeros((n,), dtype))
        if self.norm != "batch":
            return params
        stats = [
            {"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)} for n in sizes[1:-1]
        ]
        return {"params": params, "batch_stats": stats}


_init = _programs.jit("mlp.init", lambda make, key: make(key))


@dataclasses.dataclass(frozen=True)
class _Initializer:
    """``Model.init`` of an ``mlp``: one program (served by the program store), not
    one per array; equal for an equal network built again."""

    make: _Init
    rebuilt_from_spec: bool

    def __call__(self, key: jax.Array) -> Params:
        return _init(self.make, key)


def from_spec(spec: dict) -> Model:
    """The :func:`mlp` that ``spec`` (an mlp's ``Model.spec``) describes: the same
    sizes, activations, dropout, norm and named initializer. Its ``init`` draws the
    same initial params from a key when the original used the default or a named
    initializer, float32 params and zero biases (``init.rebuilt_from_spec``).

    Example:
      >>> model = mlp([3, 4, 1], "tanh", dropout=0.1)
      >>> from_spec(model.spec).spec == model.spec
      True
    """
    if not isinstance(spec, dict) or spec.get("kind") != "mlp":
        raise ValueError(f"from_spec takes the spec of a jaxnn.mlp (kind 'mlp'), got {spec!r}")
    return mlp(
        list(spec["sizes"]),
        spec["activation"],
        spec["output_activation"],
        init=spec.get("init"),
        dropout=spec.get("dropout") or 0.0,
        norm=spec.get("norm"),
    )


def _check_dropout(dropout, n_hidden: int) -> tuple[float, ...]:
    rates = (
        (dropout,) * n_hidden
        if isinstance(dropout, int | float) and not isinstance(dropout, bool)
        else dropout
    )
    if isinstance(rates, str | bytes) or not isinstance(rates, Sequence) or len(rates) != n_hidden:
        raise ValueError(
            f"dropout must be one rate or one per hidden layer ({n_hidden}), got {dropout!r}"
        )
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r < 1:
            raise ValueError(f"each dropout rate must be a number in [0, 1), got {r!r}")
    return tuple(float(r) for r in rates)


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
