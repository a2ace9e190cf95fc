"""The machinery behind ``jaxnn.optim`` (private): optimizers by name, with their
hyperparameters kept as data in the optimizer's state.

One factory, :func:`get_optimizer`, with one cache serves ``fit``, ``fit_many``, the
search and the scikit-learn estimators. A named optimizer's hyperparameters live in
its *state*, not in the compiled program: a new learning rate (or momentum, or betas)
reuses the same compiled training loop, and ``vmap`` trains models with different
values at once.

- Only a learning rate: optax's own chain (``optax.sgd`` is ``scale_by_learning_rate``
  after nothing, ``optax.adam`` after ``scale_by_adam``, ...) whose last link reads
  the rate from the state: one multiply per leaf, which matters when a step costs a
  microsecond.
- More hyperparameters: ``optax.inject_hyperparams`` of the optax factory in
  :data:`FACTORIES`, whose signature is the optimizer's list of hyperparameters.
"""

import functools
import inspect
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

DEFAULT_LEARNING_RATE = 0.01


class Optimizer(NamedTuple):
    """A named optimizer and its hyperparameters, as :func:`sgd`, :func:`adam`, ...
    make it (they check the values; build it with them)."""

    name: str
    hyperparams: Mapping[str, float]


class LearningRateState(NamedTuple):
    learning_rate: jax.Array  # shape=(), float32


def scale_by_learning_rate_in_state() -> optax.GradientTransformation:
    """``updates * -learning_rate`` with the rate held in the state (set it with
    :func:`set_hyperparams`). Unlike ``inject_hyperparams`` it adds no step counter."""

    def init(params):
        del params
        return LearningRateState(jnp.ones((), jnp.float32))

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: (-state.learning_rate).astype(u.dtype) * u, updates), state

    return optax.GradientTransformation(init, update)


_CORES = {
    "sgd": lambda: (),
    "momentum": lambda: (optax.trace(decay=0.9),),
    "nesterov": lambda: (optax.trace(decay=0.9, nesterov=True),),
    "adam": lambda: (optax.scale_by_adam(),),
    "adamw": lambda: (optax.scale_by_adam(), optax.add_decayed_weights(1e-4)),
}


def _l2(l2, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` after adding ``l2 * w`` to the gradient of every weight matrix (``None``: none)."""
    return tx if l2 is None else optax.chain(optax.add_decayed_weights(l2, mask=_weights_only), tx)


def _weights_only(params):
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


# Explicit signatures: optax.inject_hyperparams reads the hyperparameter names from them.
FACTORIES = {
    "sgd": lambda learning_rate, l2=None: _l2(l2, optax.sgd(learning_rate)),
    "momentum": lambda learning_rate, momentum=0.9, l2=None: _l2(
        l2, optax.sgd(learning_rate, momentum)
    ),
    "nesterov": lambda learning_rate, momentum=0.9, l2=None: _l2(
        l2, optax.sgd(learning_rate, momentum, True)
    ),
    "adam": lambda learning_rate, b1=0.9, b2=0.999, eps=1e-8, l2=None: _l2(
        l2, optax.adam(learning_rate, b1, b2, eps)
    ),
    "adamw": lambda learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, l2=None: _l2(
        l2, optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay)
    ),
}
OPTIMIZERS = tuple(_CORES)
# each optimizer's hyperparameters, read off its factory's signature
HYPERPARAMS = {
    name: tuple(inspect.signature(factory).parameters) for name, factory in FACTORIES.items()
}


@functools.cache
def transform(
    name: str, names: tuple[str, ...] = ("learning_rate",)
) -> optax.GradientTransformation:
    """The optimizer ``name`` whose hyperparameters ``names`` live in its state (one
    object per pair, so equal settings share compiled code)."""
    if names == ("learning_rate",):
        return optax.chain(*_CORES[name](), scale_by_learning_rate_in_state())
    placeholders = dict.fromkeys(names, 0.01)  # the real values go into the state
    return optax.inject_hyperparams(FACTORIES[name])(**placeholders)


def get_optimizer(optimizer) -> tuple[optax.GradientTransformation, dict]:
    """Resolves ``optimizer``: a name (its default hyperparameters), an
    :class:`Optimizer` value (from :func:`sgd`, :func:`adam`, ...) or any
    ``optax.GradientTransformation``.

    Returns:
      ``(tx, values)``: the transformation, and the hyperparameters to write into its
      state with :func:`set_hyperparams` (``{}`` when ``tx`` carries its own). A value
      may be 1-D: one per model, for ``fit_many``.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer, {}
    if isinstance(optimizer, str):
        optimizer = Optimizer(optimizer, {})
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a name {list(OPTIMIZERS)}, a jaxnn.optim value (jaxnn.optim.sgd(0.1), "
            f"jaxnn.optim.adam(1e-3), ...) or an optax GradientTransformation, got {optimizer!r}"
        )
    name, values = optimizer.name, dict(optimizer.hyperparams)
    check_name(name)
    if callable(values.get("learning_rate")):  # an optax schedule: step -> learning rate
        if len(values) > 1:
            raise ValueError(
                "an optax schedule as learning rate goes with no other hyperparameters"
            )
        return FACTORIES[name](learning_rate=values["learning_rate"]), {}
    values = {n: check_hyperparam(name, n, v) for n, v in values.items()}
    values.setdefault("learning_rate", DEFAULT_LEARNING_RATE)
    return transform(name, tuple(sorted(values))), values


def check_name(name) -> None:
    if not isinstance(name, str) or name not in _CORES:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}")


_BOUNDS = {  # name -> (low, high, high included)
    "momentum": (0.0, 1.0, True),
    "b1": (0.0, 1.0, False),
    "b2": (0.0, 1.0, False),
}


def check_hyperparam(optimizer: str, name, value):
    """``value`` (a number, or one per model) checked for ``optimizer``'s hyperparameter ``name``."""
    if name not in HYPERPARAMS[optimizer]:
        raise ValueError(
            f"{optimizer} has no hyperparameter {name!r}; expected one of {list(HYPERPARAMS[optimizer])}"
        )
    # fit's per-call cost: no numpy
    if type(value) is float and 1e-30 < value < 1.0 and name == "learning_rate":
        return value
    arr = np.asarray(value)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be a number (or one number per model), got {value!r}")
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a number or a non-empty 1-D sequence of numbers, got shape {arr.shape}"
        )
    f64 = arr.astype(np.float64)
    # eps divides a zero gradient's zero second moment: 0 makes NaN
    positive = name in ("learning_rate", "eps")
    bound = "> 0" if positive else ">= 0"
    finite = np.isfinite(f64).all() and (np.abs(f64) <= np.finfo(np.float32).max).all()
    if not (finite and ((f64 > 0) if positive else (f64 >= 0)).all()):
        raise ValueError(
            f"{name} must be a finite number {bound} within float32's range, got {value!r}"
        )
    if ((f64 != 0) & (f64.astype(np.float32) == 0)).any():  # training computes in float32
        raise ValueError(
            f"{name}={value!r} underflows to 0 in float32 (below about 1.4e-45); nothing would train"
        )
    if name in _BOUNDS:
        low, high, closed = _BOUNDS[name]
        if not ((f64 >= low) & ((f64 <= high) if closed else (f64 < high))).all():
            raise ValueError(
                f"{name} must be in [{low}, {high}{']' if closed else ')'}, got {value!r}"
            )
    return float(f64) if arr.ndim == 0 else f64.astype(np.float32)


def check_learning_rate(learning_rate) -> float:
    """``learning_rate`` as a float; raises unless it is one finite number > 0."""
    if np.ndim(learning_rate) != 0:
        raise TypeError(
            f"learning_rate must be a number or an optax schedule, got {learning_rate!r}"
        )
    return check_hyperparam("sgd", "learning_rate", learning_rate)


def set_hyperparams(opt_state, values: dict):
    """Writes ``values`` (``{name: number}``) into the state of a :func:`transform`."""
    if not values:
        return opt_state
    if hasattr(opt_state, "hyperparams"):  # optax.inject_hyperparams
        hp = opt_state.hyperparams
        return opt_state._replace(
            hyperparams={**hp, **{n: jnp.asarray(v, hp[n].dtype) for n, v in values.items()}}
        )
    *core, last = opt_state
    if not isinstance(last, LearningRateState) or set(values) != {"learning_rate"}:
        raise ValueError("set_hyperparams needs the state of a jaxnn named optimizer")
    return (*core, LearningRateState(jnp.asarray(values["learning_rate"], jnp.float32)))


def _map_learning_rate(opt_state, fn):
    """``opt_state`` with ``fn`` applied to every learning rate it holds: an
    ``inject_hyperparams`` state's, or a NamedTuple state's ``learning_rate`` field."""
    hp = getattr(opt_state, "hyperparams", None)
    if isinstance(hp, dict) and "learning_rate" in hp:
        return opt_state._replace(hyperparams={**hp, "learning_rate": fn(hp["learning_rate"])})
    fields = getattr(opt_state, "_fields", None)
    if fields is not None and "learning_rate" in fields:
        return opt_state._replace(learning_rate=fn(opt_state.learning_rate))
    if isinstance(opt_state, tuple):
        parts = [_map_learning_rate(s, fn) for s in opt_state]
        return type(opt_state)(*parts) if fields is not None else tuple(parts)
    return opt_state


def learning_rate_of(opt_state):
    """The learning rate held in ``opt_state`` (a named optimizer's, or any NamedTuple
    state with a ``learning_rate`` field), or ``None`` when it holds none."""
    found = []
    _map_learning_rate(opt_state, lambda lr: found.append(lr) or lr)
    return found[0] if found else None


def scale_learning_rate(opt_state, factor):
    """``opt_state`` with its learning rate multiplied by ``factor``."""
    return _map_learning_rate(opt_state, lambda lr: (lr * factor).astype(lr.dtype))
