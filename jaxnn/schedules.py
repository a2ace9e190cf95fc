"""The schedules of ``jaxnn.search``: how a search spends its epochs.

:class:`SuccessiveHalving` and :class:`Hyperband` prune and refill; :class:`PBT`
copies and perturbs. Each is a frozen value, checked when it is made.
"""

import dataclasses
import math

import numpy as np

from jaxnn._checks import MAX_EPOCHS, positive_int


def _eta(eta) -> None:
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(f"eta must be an int >= 2, got {eta!r}")


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving:
    """Successive halving with slot refill (ASHA with every slot advancing together).

    A trial trains ``min_epochs`` (the grace period); then at each rung (``min_epochs``
    times a power of ``eta``, up to ``max_epochs``) it is promoted if its best monitored
    value so far is in the top ``1/eta`` of the trials that reached that rung, else
    pruned, and its slot takes the next configuration. A promoted trial trains on from
    its own params and optimizer state (never retrained)."""

    min_epochs: int = 1
    max_epochs: int = 27
    eta: int = 3

    def __post_init__(self):
        positive_int(self.min_epochs, "min_epochs", MAX_EPOCHS)
        positive_int(self.max_epochs, "max_epochs", MAX_EPOCHS)
        _eta(self.eta)
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must be at most max_epochs ({self.max_epochs})")

    def rungs(self) -> tuple:
        """The epochs at which trials are ranked; the last is ``max_epochs``."""
        out, e = [], self.min_epochs
        while e < self.max_epochs:
            out.append(e)
            e *= self.eta
        return (*out, self.max_epochs)

    def brackets(self, n: int) -> np.ndarray:
        """Each configuration's bracket: the first rung at which it is ranked."""
        return np.zeros(n, np.int32)


@dataclasses.dataclass(frozen=True)
class Hyperband(SuccessiveHalving):
    """Hyperband: brackets of successive halving over the same slots. Bracket ``b``
    ranks its trials first at rung ``b`` (bracket 0 is the most aggressive); the
    configurations are shared out as Hyperband's budgets say (27, 12, 6 and 4 of 49
    for 1 to 27 epochs and ``eta`` 3), in bracket order."""

    def brackets(self, n: int) -> np.ndarray:
        r = len(self.rungs()) - 1
        weights = np.array([(r + 1) / (r - b + 1) * self.eta ** (r - b) for b in range(r + 1)])
        exact = weights / weights.sum() * n
        counts = np.floor(exact + 1e-9).astype(int)
        counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders
        return np.repeat(np.arange(r + 1, dtype=np.int32), counts)


@dataclasses.dataclass(frozen=True)
class PBT:
    """Population-based training: ``num_configs`` members train together for
    ``max_epochs``; every ``interval`` epochs the worst ``fraction`` copy the state of
    a random one of the best ``fraction`` (params, optimizer state and the position of
    its PRNG streams) and explore: each value is drawn again with probability
    ``resample``, else multiplied by one of ``perturb``'s factors (clipped into its
    range; a choice moves to the next option down or up). Each copy is a new trial
    whose ``parent`` is the member it copied."""

    interval: int = 4
    fraction: float = 0.25
    perturb: tuple = (0.8, 1.2)
    resample: float = 0.25
    max_epochs: int = 32

    def __post_init__(self):
        positive_int(self.interval, "interval", MAX_EPOCHS)
        positive_int(self.max_epochs, "max_epochs", MAX_EPOCHS)
        if (
            isinstance(self.fraction, bool)
            or not isinstance(self.fraction, int | float)
            or not 0 < self.fraction <= 0.5
        ):
            raise ValueError(f"fraction must be a number in (0, 0.5], got {self.fraction!r}")
        if isinstance(self.resample, bool) or not isinstance(self.resample, int | float) or not 0 <= self.resample <= 1:
            raise ValueError(f"resample must be a probability in [0, 1], got {self.resample!r}")
        factors = self.perturb
        if (
            not isinstance(factors, tuple | list)
            or not factors
            or not all(isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < math.inf for f in factors)
        ):
            raise ValueError(f"perturb must be a non-empty tuple of positive factors, got {factors!r}")
        object.__setattr__(self, "perturb", tuple(float(f) for f in factors))

    def rungs(self) -> tuple:
        return (self.max_epochs,)

    def brackets(self, n: int) -> np.ndarray:
        return np.zeros(n, np.int32)

    def replaced(self, population: int) -> int:
        """Members replaced at each exploit."""
        return max(1, int(self.fraction * population)) if population >= 2 else 0

    def trials(self, population: int) -> int:
        """Trials in all: the population and every copy."""
        return population + self.replaced(population) * ((self.max_epochs - 1) // self.interval)
