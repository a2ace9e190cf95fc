"""Search spaces for :func:`jaxnn.search`: where each hyperparameter's values come from.

>>> space = {"learning_rate": loguniform(1e-4, 1.0), "width": choice([16, 32, 64])}

Each configuration draws its values on the device from its own key (``jaxnn.rng``'s
``config`` stream of the configuration's key), so the same run key gives the same
configurations whatever the number of slots or the order they are trained in.
Population-based training perturbs a value by a factor (clipped into the range) or
draws it again.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


def _number(value, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.number)
        or not math.isfinite(value)
    ):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Values drawn uniformly from ``[low, high]``."""

    low: float
    high: float

    def __post_init__(self):
        low, high = _number(self.low, "low"), _number(self.high, "high")
        if not low < high:
            raise ValueError(f"{type(self).__name__} needs low < high, got low={low}, high={high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def draw(self, key: jax.Array) -> jax.Array:
        """One value (float32)."""
        return jax.random.uniform(key, (), jnp.float32, self.low, self.high)

    def perturb(self, value: jax.Array, factor: jax.Array) -> jax.Array:
        """``value * factor``, clipped into the range."""
        return jnp.clip(value * factor, self.low, self.high)

    def values(self, drawn: np.ndarray) -> list:
        """The values drawn, as Python floats."""
        return [float(v) for v in drawn]

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value this gives."""
        return self.low, self.high

    def on_device(self, drawn: jax.Array) -> jax.Array:
        """The value from what a trial carries (the value itself)."""
        return drawn


@dataclasses.dataclass(frozen=True)
class LogUniform(Uniform):
    """Values whose logarithm is uniform in ``[log(low), log(high)]`` (``low > 0``):
    learning rates, weight decay."""

    def __post_init__(self):
        super().__post_init__()
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")

    def draw(self, key: jax.Array) -> jax.Array:
        return jnp.exp(
            jax.random.uniform(key, (), jnp.float32, math.log(self.low), math.log(self.high))
        )


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``options`` (numbers, or names: an ``activation``), each equally
    likely. The value carried on the device is the option's index; perturbing moves
    it to the next option up or down. A result gives the option itself, of its own
    type (``choice([4, 8])`` gives ints, ``choice(["relu", "tanh"])`` names)."""

    options: tuple

    def __post_init__(self):
        options = self.options
        if isinstance(options, str | bytes) or not hasattr(options, "__len__") or not len(options):
            raise ValueError(f"choice needs a non-empty list of numbers or names, got {options!r}")
        if not all(isinstance(v, str) and v for v in options):
            for v in options:
                _number(v, "each option (numbers, or names all)")
        # NumPy numbers as Python's, each of its own kind
        options = tuple(v.item() if isinstance(v, np.number) else v for v in options)
        if len(set(options)) != len(options):
            raise ValueError(f"choice's options must differ, got {list(options)}")
        object.__setattr__(self, "options", options)

    def draw(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, len(self.options)).astype(jnp.float32)

    def perturb(self, index: jax.Array, factor: jax.Array) -> jax.Array:
        return jnp.clip(index + jnp.sign(factor - 1.0), 0, len(self.options) - 1)

    def values(self, drawn: np.ndarray) -> list:
        """The options drawn (from their indices), each of its own type."""
        return [self.options[int(i)] for i in drawn]

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest option (of numbers)."""
        if self.named:
            raise TypeError(f"a choice of names has no bounds: {list(self.options)}")
        return min(self.options), max(self.options)

    @property
    def named(self) -> bool:
        """Whether the options are names (an activation's), not numbers."""
        return isinstance(self.options[0], str)

    def on_device(self, index: jax.Array) -> jax.Array:
        """The option from what a trial carries (its index), as float32; for names,
        the index itself (int32)."""
        index = index.astype(jnp.int32)
        return index if self.named else jnp.asarray(self.options, jnp.float32)[index]


@dataclasses.dataclass(frozen=True, init=False)
class Listed(Choice):
    """Given values: configuration ``i`` takes ``values[i]`` (a grid, or values drawn
    on the host). It is a :class:`Choice` of the distinct values (sorted), so it goes
    wherever a choice goes (``width``, ``activation``); drawing it again (PBT's
    resample) picks one of the values listed."""

    picks: tuple  # each configuration's index into ``options``

    def __init__(self, values):
        if isinstance(values, str | bytes) or not hasattr(values, "__len__") or not len(values):
            raise ValueError(f"listed needs a non-empty list of numbers or names, got {values!r}")
        values = [v.item() if isinstance(v, np.number) else v for v in values]
        options = tuple(sorted(Choice(tuple(dict.fromkeys(values))).options))  # checked
        where = {v: i for i, v in enumerate(options)}
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "picks", tuple(where[v] for v in values))

    def draw(self, key: jax.Array) -> jax.Array:
        return jnp.asarray(self.picks, jnp.float32)[jax.random.randint(key, (), 0, len(self.picks))]

    def take(self, i: jax.Array) -> jax.Array:
        """Configuration ``i``'s value (its option's index)."""
        return jnp.asarray(self.picks, jnp.float32)[i]


def uniform(low: float, high: float) -> Uniform:
    """Values uniform in ``[low, high]`` (momentum, a dropout rate)."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """Values log-uniform in ``[low, high]``, ``0 < low < high`` (a learning rate)."""
    return LogUniform(low, high)


def listed(values) -> Listed:
    """Given values, one per configuration: configuration ``i`` takes ``values[i]``
    (``num_configs`` must be ``len(values)``). Several names listed together make a
    list of whole configurations: a grid, or candidates drawn by another library."""
    return Listed(values)


def choice(options) -> Choice:
    """One of ``options``, each equally likely (a width, a dropout rate, activation names)."""
    return Choice(
        tuple(options)
        if not isinstance(options, str | bytes) and hasattr(options, "__iter__")
        else options
    )
