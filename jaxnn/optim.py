"""Optimizers by name, with the learning rate kept as data.

A named optimizer is optax's own chain (``optax.sgd`` is ``scale_by_learning_rate``
after nothing, ``optax.adam`` after ``scale_by_adam``, ...) except that its last link,
the scaling by ``-learning_rate``, reads the rate from the optimizer *state*. So a
new learning rate reuses the same compiled training loop, and ``vmap`` can train
models with different rates at once. Any ``optax.GradientTransformation`` (schedules,
``optax.inject_hyperparams``, your own chain) can be passed instead of a name.
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

DEFAULT_LEARNING_RATE = 0.01


class LearningRateState(NamedTuple):
    learning_rate: jax.Array  # shape=(), float32


def scale_by_learning_rate_in_state() -> optax.GradientTransformation:
    """``updates * -learning_rate`` with the rate held in the state (set it with
    :func:`set_learning_rate`). Unlike ``inject_hyperparams`` it adds no step
    counter: one multiply per leaf, which matters when a step costs a microsecond."""

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
    "adam": lambda: (optax.scale_by_adam(),),
    "adamw": lambda: (optax.scale_by_adam(), optax.add_decayed_weights(1e-4)),
}
FACTORIES = {
    "sgd": optax.sgd,
    "momentum": functools.partial(optax.sgd, momentum=0.9),
    "adam": optax.adam,
    "adamw": functools.partial(optax.adamw, weight_decay=1e-4),
}
OPTIMIZERS = tuple(_CORES)


@functools.cache
def named(name: str) -> optax.GradientTransformation:
    """The optimizer ``name`` with its learning rate in the state (one object per
    name, so equal settings share compiled code)."""
    return optax.chain(*_CORES[name](), scale_by_learning_rate_in_state())


def get_optimizer(optimizer, learning_rate=None) -> tuple[optax.GradientTransformation, float | None]:
    """Resolves ``optimizer`` (a name or a GradientTransformation) and a learning rate.

    Returns:
      ``(tx, learning_rate)``: the transformation, and the rate to write into its
      state with :func:`set_learning_rate` (``None`` when ``tx`` carries its own).
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None:
            raise ValueError(
                "learning_rate is used only with an optimizer name; an optax "
                "GradientTransformation carries its own learning rate"
            )
        return optimizer, None
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an optax GradientTransformation, got {optimizer!r}")
    if optimizer not in _CORES:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {list(OPTIMIZERS)}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE
    if callable(learning_rate):  # an optax schedule: step -> learning rate
        return FACTORIES[optimizer](learning_rate=learning_rate), None
    check_learning_rate(learning_rate)
    return named(optimizer), float(learning_rate)


def check_learning_rate(learning_rate) -> None:
    """Raises unless ``learning_rate`` is a finite number > 0."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
        raise TypeError(f"learning_rate must be a number or an optax schedule, got {learning_rate!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate}")


def set_learning_rate(opt_state, learning_rate):
    """Writes ``learning_rate`` into the state of a :func:`named` optimizer."""
    if learning_rate is None:
        return opt_state
    *core, last = opt_state
    if not isinstance(last, LearningRateState):
        raise ValueError("set_learning_rate needs the state of a jaxnn named optimizer")
    return (*core, LearningRateState(jnp.asarray(learning_rate, jnp.float32)))
