"""The compiled search behind ``jaxnn.search`` (private; ``jaxnn.hpsearch`` is the API).

K slots train side by side in ``fit_many``'s vmapped epoch (``jaxnn._loop``). After
each epoch, inside the same compiled call: every slot's monitored value updates its
trial's best so far; a trial at a rung is ranked against every trial of its bracket
that reached that rung (non-finite as worst) and promoted (it trains on, keeping its
params and optimizer state) or pruned; a pruned, finished, stopped or diverged slot
takes the next configuration of the pool, initialised from that configuration's own
key. The host only launches chunks of epochs and reads a few numbers per chunk.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import _loop, _models, rng, space
from jaxnn.mlp import mlp as build_mlp
from jaxnn.options import Stop, TrainState

AXIS = "models"
PENDING, RUNNING, PRUNED, FINISHED, STOPPED, NAN = range(6)
STATUS = ("pending", "running", "pruned", "finished", "stopped", "nan")


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a search: one compiled program per distinct value."""

    plan: _loop.Plan
    init: Callable  # the model's init (the widest network's)
    mlp_spec: tuple  # (sizes, activation, output_activation, dropout, norm) to rebuild a w-wide mlp, or ()
    space: tuple  # ((name, distribution), ...)
    optimizer_names: tuple  # the names of the space that are optimizer hyperparameters
    rungs: tuple  # the epochs of each rung; the last is the budget
    eta: int
    n: int  # configurations
    k: int  # slots
    monitor: str
    sign: float  # 1.0: lower is better; -1.0: higher is better
    chunk: int
    pbt: Any = None  # a jaxnn.PBT, or None for (successive) halving


class State(NamedTuple):
    """The search state: a pytree (the slots' stacked carry and the trials' table)."""

    carry: _loop.Carry  # (K, ...) the slots' training state
    trial: jax.Array  # (K,) int32: the trial each slot trains, -1 idle
    next: jax.Array  # () int32: the next configuration of the pool
    drawn: dict  # name -> (N,) float32: each trial's values (a choice's index)
    scores: jax.Array  # (N, R) float32, lower is better: best so far at each rung reached (inf: not reached)
    reached: jax.Array  # (N, R) bool
    curve: jax.Array  # (N, E) float32: the monitored value after each epoch (NaN: not trained)
    status: jax.Array  # (N,) int32
    epochs: jax.Array  # (N,) int32
    best: jax.Array  # (N,) float32, lower is better: best so far
    parent: jax.Array  # (N,) int32: the trial a PBT member copied (-1: none)
    champion: Any  # variables of the best finished trial
    champion_id: jax.Array  # () int32 (-1: none yet)


def _value(prog: Program, drawn: dict, name: str, t):
    return space.value_on_device(dict(prog.space)[name], drawn[name][t])


def _initial_variables(prog: Program, key: jax.Array, width):
    """The trial's initial variables: the model's, or (a width search) the w-wide
    network's own initial distribution, zero-padded to the widest network."""
    if not prog.mlp_spec or width is None:
        return prog.init(key)
    sizes, activation, output_activation, dropout, norm = prog.mlp_spec
    options = dict(prog.space)["width"].options
    full = prog.init(key)

    def init_for(w):
        hidden = [int(w)] * (len(sizes) - 2)
        narrow = build_mlp([sizes[0], *hidden, sizes[-1]], activation, output_activation, dropout=dropout, norm=norm)
        pad = lambda a, b: jnp.zeros_like(b).at[tuple(slice(0, s) for s in a.shape)].set(a)
        return lambda: jax.tree.map(pad, narrow.init(key), full)

    return jax.lax.switch(width.astype(jnp.int32), [init_for(w) for w in options])


def initial_variables(prog: Program, keys: jax.Array, drawn: dict):
    """Every configuration's initial variables, stacked (one program for the pool:
    a slot's refill then only gathers its row)."""
    widths = drawn.get("width")
    one = lambda k, w: _initial_variables(prog, rng.stream(k, "init"), w)
    return jax.vmap(one)(keys, widths) if widths is not None else jax.vmap(lambda k: one(k, None))(keys)


def fresh_carry(prog: Program, inits, keys: jax.Array, drawn: dict, t) -> _loop.Carry:
    """The carry of trial ``t`` starting: its key, its initial params, its
    hyperparameters in a fresh optimizer state."""
    variables = jax.tree.map(lambda a: a[t], inits)
    params, model_state = _models.split_variables(prog.plan.apply_fn, variables)
    extra = {}
    if "dropout" in drawn:
        extra["dropout_rate"] = _value(prog, drawn, "dropout", t)
    if "width" in drawn:
        extra["width"] = _value(prog, drawn, "width", t)
    model_state = {**(model_state or {}), **extra} or None
    zero = jnp.zeros((), jnp.int32)
    state = TrainState(params, None, zero, zero, keys[t], model_state)
    return _loop.initial_carry(prog.plan, state, {n: _value(prog, drawn, n, t) for n in prog.optimizer_names})


def _select(pred, new, old):
    """Slot by slot: ``new`` where ``pred`` else ``old`` (keys included)."""

    def pick(a, b):
        if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            data = jnp.where(_expand(pred, b.ndim + 1), jax.random.key_data(a), jax.random.key_data(b))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(b))
        return jnp.where(_expand(pred, b.ndim), a, b)

    return jax.tree.map(pick, new, old)


def _expand(pred, ndim: int):
    return pred.reshape(pred.shape + (1,) * (ndim - pred.ndim))


def _fresh_slots(prog: Program, pool, trial):
    inits, keys, drawn = pool
    return jax.vmap(lambda t: fresh_carry(prog, inits, keys, drawn, t))(jnp.clip(trial, 0, prog.n - 1))


def start(prog: Program, pool) -> State:
    """The search's first state: slot ``i`` trains configuration ``i``. ``pool`` is
    ``(initial variables, keys, drawn values)`` of every configuration."""
    n, k, r, e = prog.n, prog.k, len(prog.rungs), prog.rungs[-1]
    trial = jnp.arange(k, dtype=jnp.int32)
    carry = _fresh_slots(prog, pool, trial)
    champion = jax.tree.map(lambda a: jnp.zeros_like(a[0]), carry.state.variables)
    return State(
        carry=carry,
        trial=trial,
        next=jnp.int32(k),
        drawn=pool[2],
        scores=jnp.full((n, r), jnp.inf, jnp.float32),
        reached=jnp.zeros((n, r), bool),
        curve=jnp.full((n, e), jnp.nan, jnp.float32),
        status=jnp.where(jnp.arange(n) < k, RUNNING, PENDING).astype(jnp.int32),
        epochs=jnp.zeros((n,), jnp.int32),
        best=jnp.full((n,), jnp.inf, jnp.float32),
        parent=jnp.full((n,), -1, jnp.int32),
        champion=champion,
        champion_id=jnp.int32(-1),
    )


def _train(prog: Program, data, s: State):
    """One epoch in every live slot. Returns the new carry, the slots' live mask,
    their epoch count and their monitored value (lower is better; inf when not finite)."""
    live = s.trial >= 0
    new, records, _ = jax.vmap(lambda c: _loop._one_epoch(prog.plan, data, c), axis_name=AXIS)(s.carry)
    carry = _select(live, new, s.carry)
    v = records[prog.monitor]
    lower = jnp.where(jnp.isfinite(v), prog.sign * v, jnp.inf)
    return carry, live, carry.state.epoch, v, lower


def _rank(prog: Program, s: State, bracket, t, rung, deciding):
    """Whether each deciding slot's trial is in the top ``1/eta`` of the trials of its
    bracket that reached its rung (ties: the lower trial id first)."""
    col = jnp.clip(rung, 0, len(prog.rungs) - 1)
    scores = s.scores[:, col]  # (N, K)
    peers = s.reached[:, col] & (bracket[:, None] == bracket[t][None, :])
    mine = scores[jnp.clip(t, 0, prog.n - 1), jnp.arange(prog.k)]
    ids = jnp.arange(prog.n)[:, None]
    better = peers & ((scores < mine[None, :]) | ((scores == mine[None, :]) & (ids < t[None, :])))
    keep = jnp.maximum(peers.sum(axis=0) // prog.eta, 1)
    return deciding & (better.sum(axis=0) < keep)


def _halving_tick(prog: Program, data, pool, bracket, s: State) -> State:
    carry, live, epoch, v, lower = _train(prog, data, s)
    n, t = prog.n, jnp.where(live, s.trial, prog.n)  # index n: dropped by the scatters
    best = jnp.minimum(s.best.at[t].get(mode="fill", fill_value=jnp.inf), lower)
    rung_of = (
        jnp.full((prog.rungs[-1] + 1,), -1, jnp.int32)
        .at[jnp.asarray(prog.rungs)]
        .set(jnp.arange(len(prog.rungs), dtype=jnp.int32))
    )
    rung = jnp.where(live, rung_of[epoch], -1)
    nan = live & (carry.stop == Stop.NON_FINITE_LOSS)
    stopped = live & (carry.stop == Stop.EARLY_STOPPING) & ~nan
    finished = live & (epoch >= prog.rungs[-1]) & ~nan & ~stopped
    deciding = live & (rung >= bracket[jnp.clip(t, 0, n - 1)]) & ~nan & ~stopped
    at = jnp.where(deciding, rung, len(prog.rungs))
    s = s._replace(
        carry=carry,
        best=s.best.at[t].set(best, mode="drop"),
        epochs=s.epochs.at[t].set(epoch, mode="drop"),
        curve=s.curve.at[t, epoch - 1].set(v, mode="drop"),
        scores=s.scores.at[t, at].set(best, mode="drop"),
        reached=s.reached.at[t, at].set(True, mode="drop"),
    )
    promoted = _rank(prog, s, bracket, t, rung, deciding & ~finished)
    pruned = deciding & ~finished & ~promoted
    status = jnp.select([nan, stopped, finished, pruned], [NAN, STOPPED, FINISHED, PRUNED], RUNNING)
    s = s._replace(status=s.status.at[t].set(status.astype(jnp.int32), mode="drop"))
    s = _crown(s, finished, best, t)
    return _refill(prog, pool, s, nan | stopped | finished | pruned)


def _crown(s: State, finished, best, t) -> State:
    """Keeps the variables of the best trial that finished so far."""
    candidate = jnp.where(finished, best, jnp.inf)
    i = jnp.argmin(candidate)
    current = s.best[jnp.maximum(s.champion_id, 0)]
    wins = jnp.isfinite(candidate[i]) & ((s.champion_id < 0) | (candidate[i] < current))
    variables = jax.tree.map(lambda a: a[i], s.carry.state.variables)
    return s._replace(
        champion=jax.tree.map(lambda a, b: jnp.where(wins, a, b), variables, s.champion),
        champion_id=jnp.where(wins, t[i], s.champion_id),
    )


def _refill(prog: Program, pool, s: State, free) -> State:
    """Free slots take the pool's next configurations, in slot order."""
    new_t = s.next + jnp.cumsum(free) - 1
    ok = free & (new_t < prog.n)
    trial = jnp.where(free, jnp.where(ok, new_t, -1), s.trial).astype(jnp.int32)
    fresh = _fresh_slots(prog, pool, trial)
    return s._replace(
        carry=_select(ok, fresh, s.carry),
        trial=trial,
        next=(s.next + ok.sum()).astype(jnp.int32),
        status=s.status.at[jnp.where(ok, new_t, prog.n)].set(RUNNING, mode="drop"),
    )


def chunk(prog: Program, s: State, data, pool, bracket):
    """Up to ``prog.chunk`` epochs of the search (nothing once every slot is idle).
    Returns the state and ``(live slots, next configuration)`` for the host."""

    def body(s, _):
        tick = lambda s: _halving_tick(prog, data, pool, bracket, s)
        return jax.lax.cond((s.trial >= 0).any(), tick, lambda s: s, s), None

    s, _ = jax.lax.scan(body, s, None, length=prog.chunk)
    return s, ((s.trial >= 0).sum(), s.next)


run_inits = jax.jit(initial_variables, static_argnums=0)
run_start = jax.jit(start, static_argnums=0)
run_chunk = jax.jit(chunk, static_argnums=0, donate_argnums=1)
