"""The schedulers of ``jaxnn.search``: how a search spends its epochs.

:class:`SuccessiveHalving` and :class:`Hyperband` prune and refill; :class:`PBT`
copies and perturbs. Each is a frozen value, checked when it is made, and carries
everything the search needs to know of it: its rungs and brackets, how many trials
and slots it takes, and its ``tick``, the decisions it makes inside the compiled
program after every epoch (from ``jaxnn.tune._program``'s pieces). A new scheduler is
a new class here with the same methods.
"""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _optim
from jaxnn._checks import MAX_ELEMENTS, MAX_EPOCHS, positive_int
from jaxnn.options import TrialStatus as S
from jaxnn.tune import _program


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
            raise ValueError(
                f"min_epochs ({self.min_epochs}) must be at most max_epochs ({self.max_epochs})"
            )

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

    # the winner's values held for its whole training: it can be trained again
    refits: ClassVar[bool] = True

    def check(self, space: dict, early_stopping) -> None:
        """Raises for a search this scheduler cannot run (none for halving)."""

    def sizes(self, num_configs: int, slots: int | None, devices: int) -> tuple[int, int, int]:
        """``(trials, configurations drawn, slots)``: by default ``ceil(num_configs /
        eta**2)`` slots, rounded up to a multiple of the ``devices``; never more slots
        than configurations."""
        n = positive_int(num_configs, "num_configs", MAX_ELEMENTS)
        if slots is not None:
            # capped at the configurations: a slot with none to train would only burn the
            # device, and the results do not depend on the slots
            return n, n, min(positive_int(slots, "slots", MAX_ELEMENTS), n)
        k = min(n, math.ceil(n / self.eta**2))
        return n, n, math.ceil(k / devices) * devices

    def progress(self, prog) -> tuple[int, str]:
        """The progress bar's total and unit: the trials decided."""
        return prog.trials, "trial"

    def decided(self, s) -> jax.Array:
        return (s.status >= S.PRUNED).sum()

    def tick(self, prog, data, pool, s):
        """One epoch of every live slot, then each trial at a rung is ranked against
        its bracket's peers there: promoted (trains on) or pruned; a finished, pruned,
        stopped or diverged trial's slot takes the next configuration."""
        s, ep = _program.train_epoch(prog, data, s, latest=False)
        tc = jnp.clip(ep.t, 0, prog.trials - 1)
        rung_of = jnp.full((prog.rungs[-1] + 1,), -1, jnp.int32)
        rung_of = rung_of.at[jnp.asarray(prog.rungs)].set(
            jnp.arange(len(prog.rungs), dtype=jnp.int32)
        )
        live = ep.t < prog.trials
        rung = jnp.where(live, rung_of[ep.epoch], -1)
        finished = live & (ep.epoch >= prog.rungs[-1]) & ~ep.nan & ~ep.stopped
        deciding = live & (rung >= pool.bracket[tc]) & ~ep.nan & ~ep.stopped
        at = jnp.where(deciding, rung, len(prog.rungs))
        s = s._replace(
            scores=s.scores.at[ep.t, at].set(ep.lower, mode="drop"),
            reached=s.reached.at[ep.t, at].set(True, mode="drop"),
        )
        promoted = self._rank(prog, s, pool.bracket, tc, rung, deciding & ~finished)
        pruned = deciding & ~finished & ~promoted
        status = jnp.select(
            [ep.nan, ep.stopped, finished, pruned],
            [S.NAN, S.STOPPED, S.FINISHED, S.PRUNED],
            S.RUNNING,
        )
        s = s._replace(status=s.status.at[ep.t].set(status.astype(jnp.int32), mode="drop"))
        s = _program.crown(prog, s, finished, ep.lower, ep.t)
        return _program.refill(prog, pool, s, ep.nan | ep.stopped | finished | pruned)

    def _rank(self, prog, s, bracket, t, rung, deciding):
        """Whether each deciding slot's trial is in the top ``1/eta`` of the trials of its
        bracket that reached its rung (ties: the lower trial id first)."""
        col = jnp.clip(rung, 0, len(prog.rungs) - 1)
        scores = s.scores[:, col]  # (N, K)
        peers = s.reached[:, col] & (bracket[:, None] == bracket[t][None, :])
        mine = scores[t, jnp.arange(prog.slots)][None, :]
        ids = jnp.arange(prog.trials)[:, None]
        better = peers & ((scores < mine) | ((scores == mine) & (ids < t[None, :])))
        keep = jnp.maximum(peers.sum(axis=0) // self.eta, 1)
        return deciding & (better.sum(axis=0) < keep)


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
        # largest remainders
        counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1
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
        if (
            isinstance(self.resample, bool)
            or not isinstance(self.resample, int | float)
            or not 0 <= self.resample <= 1
        ):
            raise ValueError(f"resample must be a probability in [0, 1], got {self.resample!r}")
        factors = self.perturb
        if (
            not isinstance(factors, tuple | list)
            or not factors
            or not all(
                isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < math.inf
                for f in factors
            )
        ):
            raise ValueError(
                f"perturb must be a non-empty tuple of positive factors, got {factors!r}"
            )
        object.__setattr__(self, "perturb", tuple(float(f) for f in factors))

    def rungs(self) -> tuple:
        return (self.max_epochs,)

    def brackets(self, n: int) -> np.ndarray:
        return np.zeros(n, np.int32)

    refits: ClassVar[bool] = False  # the winner's values changed as it trained: no fit retrains it

    def check(self, space: dict, early_stopping) -> None:
        if early_stopping is not None:
            raise ValueError(
                "PBT replaces its worst members itself: early_stopping goes with the halving schedules"
            )
        for name, what in (("width", "masked units"), ("depth", "unused layers")):
            if name in space:
                raise ValueError(
                    f"PBT cannot change a {name}: a copied network's {what} have no trained weights to grow into"
                )
        if "batch_size" in space:
            raise ValueError(
                "PBT cannot search batch_size: its population trains in one bucket of slots, one batch size; "
                "use SuccessiveHalving or Hyperband"
            )

    def sizes(self, num_configs: int, slots: int | None, devices: int) -> tuple[int, int, int]:
        """``(trials, configurations drawn, slots)``: the whole population trains at once."""
        n = positive_int(num_configs, "num_configs", MAX_ELEMENTS)
        if slots is not None and slots != n:
            raise ValueError(
                f"PBT trains its whole population at once: slots must be None or {n}, got {slots!r}"
            )
        return self.trials(n), n, n

    def progress(self, prog) -> tuple[int, str]:
        """The progress bar's total and unit: the epochs."""
        return prog.rungs[-1], "epoch"

    def decided(self, s) -> jax.Array:
        return s.epochs.max()

    def tick(self, prog, data, pool, s):
        """One epoch of every member; every ``interval`` epochs the worst copy the
        best and explore."""
        s, ep = _program.train_epoch(prog, data, s, latest=True)
        live = ep.t < prog.trials
        epoch = ep.epoch.max()  # every slot trains every epoch
        finished = live & (ep.epoch >= prog.rungs[-1])
        last = jnp.where(ep.nan, S.NAN, jnp.where(ep.stopped, S.STOPPED, S.FINISHED)).astype(
            jnp.int32
        )
        s = s._replace(
            status=s.status.at[jnp.where(finished, ep.t, prog.trials)].set(last, mode="drop")
        )
        s = _program.crown(prog, s, finished & ~ep.nan & ~ep.stopped, ep.lower, ep.t)
        s = s._replace(trial=jnp.where(finished, -1, s.trial))
        exploit = (epoch % self.interval == 0) & (epoch < prog.rungs[-1])
        return jax.lax.cond(
            exploit, lambda s: self._exploit(prog, pool, s, ep, epoch), lambda s: s, s
        )

    def replaced(self, population: int) -> int:
        """Members replaced at each exploit."""
        return max(1, int(self.fraction * population)) if population >= 2 else 0

    def trials(self, population: int) -> int:
        """Trials in all: the population and every copy."""
        return population + self.replaced(population) * ((self.max_epochs - 1) // self.interval)

    def _exploit(self, prog, pool, s, ep, epoch):
        """The worst ``q`` slots copy a random one of the best ``q`` and explore."""
        q = self.replaced(prog.slots)
        key = jax.random.fold_in(pool.explore, epoch)
        order = jnp.argsort(ep.lower, stable=True)  # best first; non-finite last
        worst, best = order[prog.slots - q :], order[:q]
        source = best[jax.random.randint(jax.random.fold_in(key, 0), (q,), 0, q)]
        new_t = s.next + jnp.arange(q, dtype=jnp.int32)
        parent = s.trial[source]
        drawn = dict(s.drawn)
        for j, (name, dist) in enumerate(prog.space):
            k = jax.random.fold_in(key, j + 1)
            kr, kf, kd = jax.random.split(k, 3)
            factors = jnp.asarray(self.perturb, jnp.float32)
            factor = factors[jax.random.randint(kf, (q,), 0, len(self.perturb))]
            again = jax.vmap(dist.draw)(jax.random.split(kd, q))
            moved = dist.perturb(drawn[name][parent], factor)
            drawn[name] = (
                drawn[name]
                .at[new_t]
                .set(jnp.where(jax.random.uniform(kr, (q,)) < self.resample, again, moved))
            )
        (slots_carry,) = s.carry  # PBT: one bucket
        copied = jax.tree.map(lambda a: a[source], slots_carry)
        copied = copied._replace(state=self._explored_state(prog, copied.state, drawn, new_t))
        carry = (jax.tree.map(lambda a, b: a.at[worst].set(b), slots_carry, copied),)
        return s._replace(
            carry=carry,
            trial=s.trial.at[worst].set(new_t),
            next=s.next + q,
            drawn=drawn,
            status=s.status.at[s.trial[worst]]
            .set(jnp.where(ep.nan[worst], S.NAN, S.PRUNED))
            .at[new_t]
            .set(S.RUNNING),
            parent=s.parent.at[new_t].set(parent),
            epochs=s.epochs.at[new_t].set(s.epochs[parent]),
            best=s.best.at[new_t].set(s.best[parent]),
            curve=s.curve.at[new_t].set(s.curve[parent]),
        )

    def _explored_state(self, prog, state, drawn: dict, new_t):
        """The copied states with the new members' values written in."""
        values = {n: _program.value(prog, drawn, n, new_t) for n in prog.optimizer_names}
        set_values = lambda o, v: _program.per_fold(prog, lambda of: _optim.set_hyperparams(of, v))(
            o
        )
        opt_state = jax.vmap(set_values)(state.opt_state, values) if values else state.opt_state
        set_state = lambda ms, t: _program.per_fold(
            prog, lambda m: _program.model_state(prog, m, drawn, t)
        )(ms)
        model_state = jax.vmap(set_state)(state.model_state, new_t)
        return state._replace(opt_state=opt_state, model_state=model_state)
