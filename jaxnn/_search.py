"""The compiled search behind ``jaxnn.search`` (private; ``jaxnn.hpsearch`` is the API).

K slots train side by side in ``fit_many``'s vmapped epoch (``jaxnn._loop``). After
each epoch, inside the same compiled call:

- successive halving: every slot's monitored value updates its trial's best so far; a
  trial at a rung is ranked against every trial of its bracket that reached that rung
  (non-finite as worst) and promoted (it trains on from its own params and optimizer
  state) or pruned; a pruned, finished, stopped or diverged slot takes the next
  configuration of the pool, initialised from that configuration's own key;
- population-based training: every ``interval`` epochs the worst slots copy the state
  of better ones (params, optimizer state, the position in their PRNG streams) and
  explore: each value multiplied by one of ``perturb``'s factors, or drawn again.

The host only launches chunks of epochs and reads three numbers (one array) per chunk.
"""

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import _loop, _models, _widths, optim, rng, space
from jaxnn.initializers import FAN_MODE, default_initializer, get_initializer
from jaxnn.mlp import mlp as build_mlp
from jaxnn.options import Stop, TrainState

AXIS = "models"
PENDING, RUNNING, PRUNED, FINISHED, STOPPED, NAN = range(6)
STATUS = ("pending", "running", "pruned", "finished", "stopped", "nan")


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a search: one compiled program per distinct value."""

    plan: _loop.Plan
    init: Callable | None  # the model's init; None: a jaxnn.mlp's, rebuilt from mlp_spec (equal by value)
    mlp_spec: tuple  # (sizes, activation, output_activation, dropout, norm, init name) of a jaxnn.mlp, or ()
    space: tuple  # ((name, distribution), ...)
    optimizer_names: tuple  # the names of the space that are the optimizer's hyperparameters
    fixed: tuple  # ((name, value), ...): the optimizer's other hyperparameters
    rungs: tuple  # the epochs of each rung; the last is the budget
    eta: int
    n: int  # trials (PBT: the population and every member that replaced one)
    k: int  # slots
    monitor: str
    sign: float  # 1.0: lower is better; -1.0: higher is better
    chunk: int
    pbt: Any = None  # a jaxnn.PBT, or None for successive halving
    folds: int = 0  # cv: every slot trains this many copies, one per fold (0: one, on the validation split)
    buckets: tuple = ()  # a width search's ((width, slots), ...) (jaxnn._widths); (): every slot at full width


class Pool(NamedTuple):
    """The configurations: every one's initial variables (stacked), key, drawn values
    (a choice's index; name -> (N,)) and bracket, the key PBT explores with, and each
    width bucket's queue (``(B, N)``: its trials in id order, then ``N``)."""

    inits: Any
    keys: jax.Array
    drawn: dict
    bracket: jax.Array
    explore: jax.Array
    queue: jax.Array


class State(NamedTuple):
    """The search state: a pytree (the slots' stacked carry and the trials' table)."""

    carry: tuple  # each bucket's slots' training state, (K_b, ...); the slots of all of them are K
    trial: jax.Array  # (K,) int32: the trial each slot trains, -1 idle
    next: jax.Array  # () int32: trials started (PBT: the next trial id)
    taken: jax.Array  # (B,) int32: the trials each bucket took from its queue
    drawn: dict  # name -> (N,) float32: each trial's values (a choice's index)
    scores: jax.Array  # (N, R) float32, lower is better: best so far at each rung reached (inf: not reached)
    reached: jax.Array  # (N, R) bool
    curve: jax.Array  # (N, E) float32: the monitored value after each epoch (NaN: not trained)
    status: jax.Array  # (N,) int32
    epochs: jax.Array  # (N,) int32
    best: jax.Array  # (N,) float32, lower is better: best so far (PBT: the last value)
    parent: jax.Array  # (N,) int32: the trial a PBT member copied (-1: none)
    champion: Any  # variables of the best finished trial
    champion_id: jax.Array  # () int32 (-1: none yet)


def value(prog: Program, drawn: dict, name: str, t):
    """Trial ``t``'s value of ``name`` (a choice's option, not its index)."""
    return space.value_on_device(dict(prog.space)[name], drawn[name][t])


def _spec_model(prog: Program, width: int | None = None):
    sizes, activation, output_activation, dropout, norm, init = prog.mlp_spec
    if width is not None:
        sizes = _widths.hidden(sizes, width)
    return build_mlp(list(sizes), activation, output_activation, init=init, dropout=dropout, norm=norm)


def slots(prog: Program) -> tuple:
    """``((first slot, slots, width or None), ...)``: each bucket's part of the slots."""
    if not prog.buckets:
        return ((0, prog.k, None),)
    firsts = itertools.accumulate((k for _, k in prog.buckets), initial=0)
    return tuple((first, k, w) for first, (w, k) in zip(firsts, prog.buckets, strict=False))


def _initial_variables(prog: Program, key: jax.Array, width):
    """The trial's initial variables: the model's, or (a width search) those of its
    first ``width`` hidden units, scaled to be distributed as a ``width``-wide
    network's own initial weights (its fans are smaller), the other units zero."""
    full = (prog.init or _spec_model(prog).init)(key)
    if width is None:
        return full
    sizes, activation, output_activation, init_name = (*prog.mlp_spec[:3], prog.mlp_spec[5])
    w = space.value_on_device(dict(prog.space)["width"], width)
    layers = full["params"] if isinstance(full, dict) else full
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    narrowed = []
    for i, (layer, act) in enumerate(zip(layers, acts, strict=True)):
        n_in, n_out = sizes[i], sizes[i + 1]
        w_in = n_in if i == 0 else w
        w_out = n_out if i == len(acts) - 1 else w
        keep_in, keep_out = jnp.arange(n_in) < w_in, jnp.arange(n_out) < w_out
        mode = FAN_MODE[id(get_initializer(init_name) if init_name else default_initializer(act))]
        scale = jnp.sqrt(n_in / w_in) if mode == "fan_in" else jnp.sqrt((n_in + n_out) / (w_in + w_out))
        kernel = layer["w"] * scale * (keep_in[:, None] & keep_out[None, :])
        narrowed.append(
            {**{k: v * keep_out for k, v in layer.items() if k != "w"}, "w": kernel.astype(layer["w"].dtype)}
        )
    return {**full, "params": narrowed} if isinstance(full, dict) else narrowed


def initial_variables(prog: Program, keys: jax.Array, drawn: dict):
    """Every configuration's initial variables, stacked (one program for the pool:
    a slot's refill then only gathers its row)."""
    widths = drawn.get("width")
    one = lambda k, w: _initial_variables(prog, rng.stream(k, "init"), w)
    return jax.vmap(one)(keys, widths) if widths is not None else jax.vmap(lambda k: one(k, None))(keys)


def _model_state(prog: Program, model_state, drawn: dict, t):
    """The model state with trial ``t``'s values of the names the model reads."""
    extra = {("dropout_rate" if n == "dropout" else n): value(prog, drawn, n, t) for n, _ in prog.space}
    extra = {n: v for n, v in extra.items() if n not in prog.optimizer_names}
    return {**(model_state or {}), **extra} or None


def fresh_carry(prog: Program, pool: Pool, t, width: int | None = None) -> _loop.Carry:
    """The carry of trial ``t`` starting: its key, its initial params (the first
    ``width`` units of its hidden layers), its hyperparameters in a fresh optimizer state."""
    variables = jax.tree.map(lambda a: a[t], pool.inits)
    if width is not None:
        variables = _widths.narrow(variables, jax.eval_shape(_spec_model(prog, width).init, pool.keys[0]))
    params, model_state = _models.split_variables(prog.plan.apply_fn, variables)
    zero = jnp.zeros((), jnp.int32)
    state = TrainState(params, None, zero, zero, pool.keys[t], _model_state(prog, model_state, pool.drawn, t))
    values = {**dict(prog.fixed), **{n: value(prog, pool.drawn, n, t) for n in prog.optimizer_names}}
    return _loop.initial_carry(prog.plan, state, values)


def _expand(pred, ndim: int):
    return pred.reshape(pred.shape + (1,) * (ndim - pred.ndim))


def _select(pred, new, old):
    """Slot by slot: ``new`` where ``pred`` else ``old`` (keys included)."""

    def pick(a, b):
        if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            data = jnp.where(_expand(pred, b.ndim + 1), jax.random.key_data(a), jax.random.key_data(b))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(b))
        return jnp.where(_expand(pred, b.ndim), a, b)

    return jax.tree.map(pick, new, old)


def _per_fold(prog: Program, fn):
    """``fn`` over the folds' axis (cv), or ``fn`` itself."""
    return jax.vmap(fn) if prog.folds else fn


def _fresh_slots(prog: Program, pool: Pool, trial, width=None):
    def one(t):
        carry = fresh_carry(prog, pool, t, width)
        return jax.vmap(lambda _: carry)(jnp.arange(prog.folds)) if prog.folds else carry  # a copy per fold

    return jax.vmap(one)(jnp.clip(trial, 0, prog.n - 1))


def start(prog: Program, pool: Pool) -> State:
    """The search's first state: each bucket's slots train the first trials of its queue."""
    n, r, e = prog.n, len(prog.rungs), prog.rungs[-1]
    carry, trial = [], []
    for b, (_, k, width) in enumerate(slots(prog)):
        t = pool.queue[b].at[jnp.arange(k)].get(mode="fill", fill_value=n)
        trial.append(jnp.where(t < n, t, -1).astype(jnp.int32))  # more slots than trials: idle
        carry.append(_fresh_slots(prog, pool, trial[-1], width))
    trial = jnp.concatenate(trial)
    full = jax.eval_shape(lambda p: fresh_carry(prog, p, 0).state.variables, pool)
    return State(
        carry=tuple(carry),
        trial=trial,
        next=(trial >= 0).sum().astype(jnp.int32),
        taken=jnp.stack([(t >= 0).sum() for t in jnp.split(trial, _firsts(prog))]).astype(jnp.int32),
        drawn=pool.drawn,
        scores=jnp.full((n, r), jnp.inf, jnp.float32),
        reached=jnp.zeros((n, r), bool),
        curve=jnp.full((n, e), jnp.nan, jnp.float32),
        status=jnp.full((n,), PENDING, jnp.int32).at[jnp.where(trial >= 0, trial, n)].set(RUNNING, mode="drop"),
        epochs=jnp.zeros((n,), jnp.int32),
        best=jnp.full((n,), jnp.inf, jnp.float32),
        parent=jnp.full((n,), -1, jnp.int32),
        champion=jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), full),
        champion_id=jnp.int32(-1),
    )


def _firsts(prog: Program) -> list:
    """Where each bucket's slots start, after the first (``jnp.split``'s indices)."""
    return [first for first, _, _ in slots(prog)[1:]]


class Epoch(NamedTuple):
    """What one epoch of every slot gave: the trials (``n``: idle), their epoch
    count, monitored value and its lower-is-better form (inf when not finite), and
    whether their training loss went non-finite or their early stopping fired."""

    t: jax.Array
    epoch: jax.Array
    value: jax.Array
    lower: jax.Array
    nan: jax.Array
    stopped: jax.Array


def _train(prog: Program, data, s: State, latest: bool) -> tuple[State, Epoch]:
    """One epoch in every live slot, recorded in the trials' table (``best``: the best
    so far, or with ``latest`` the last value)."""
    live = s.trial >= 0
    epoch_of = lambda c, d: _loop.one_epoch(prog.plan, d, c)
    one = jax.vmap(epoch_of) if prog.folds else epoch_of  # cv: each fold its own data
    carry, parts = [], []
    for c, alive in zip(s.carry, jnp.split(live, _firsts(prog)), strict=True):  # each width bucket
        new, records, _ = jax.vmap(lambda c: one(c, data), axis_name=AXIS)(c)
        carry.append(_select(alive, new, c))
        parts.append((records[prog.monitor], carry[-1].state.epoch, carry[-1].stop))
    v, epoch, stop = (jnp.concatenate(a) for a in zip(*parts, strict=True))
    if prog.folds:  # scored by the mean over the folds
        v, epoch = v.mean(axis=1), epoch[:, 0]
        stop = jnp.where((stop == Stop.NON_FINITE_LOSS).any(axis=1), Stop.NON_FINITE_LOSS, stop.max(axis=1))
    lower = jnp.where(jnp.isfinite(v), prog.sign * v, jnp.inf)
    t = jnp.where(live, s.trial, prog.n)  # index n: dropped by the scatters
    best = lower if latest else jnp.minimum(s.best.at[t].get(mode="fill", fill_value=jnp.inf), lower)
    nan = live & (stop == Stop.NON_FINITE_LOSS)
    stopped = live & (stop == Stop.EARLY_STOPPING) & ~nan
    s = s._replace(
        carry=tuple(carry),
        best=s.best.at[t].set(best, mode="drop"),
        epochs=s.epochs.at[t].set(epoch, mode="drop"),
        curve=s.curve.at[t, epoch - 1].set(v, mode="drop"),
    )
    return s, Epoch(t, epoch, v, best, nan, stopped)


def _rank(prog: Program, s: State, bracket, t, rung, deciding):
    """Whether each deciding slot's trial is in the top ``1/eta`` of the trials of its
    bracket that reached its rung (ties: the lower trial id first)."""
    col = jnp.clip(rung, 0, len(prog.rungs) - 1)
    scores = s.scores[:, col]  # (N, K)
    peers = s.reached[:, col] & (bracket[:, None] == bracket[t][None, :])
    mine = scores[t, jnp.arange(prog.k)][None, :]
    ids = jnp.arange(prog.n)[:, None]
    better = peers & ((scores < mine) | ((scores == mine) & (ids < t[None, :])))
    keep = jnp.maximum(peers.sum(axis=0) // prog.eta, 1)
    return deciding & (better.sum(axis=0) < keep)


def _halving_tick(prog: Program, data, pool: Pool, s: State) -> State:
    s, ep = _train(prog, data, s, latest=False)
    tc = jnp.clip(ep.t, 0, prog.n - 1)
    rung_of = jnp.full((prog.rungs[-1] + 1,), -1, jnp.int32)
    rung_of = rung_of.at[jnp.asarray(prog.rungs)].set(jnp.arange(len(prog.rungs), dtype=jnp.int32))
    live = ep.t < prog.n
    rung = jnp.where(live, rung_of[ep.epoch], -1)
    finished = live & (ep.epoch >= prog.rungs[-1]) & ~ep.nan & ~ep.stopped
    deciding = live & (rung >= pool.bracket[tc]) & ~ep.nan & ~ep.stopped
    at = jnp.where(deciding, rung, len(prog.rungs))
    s = s._replace(
        scores=s.scores.at[ep.t, at].set(ep.lower, mode="drop"),
        reached=s.reached.at[ep.t, at].set(True, mode="drop"),
    )
    promoted = _rank(prog, s, pool.bracket, tc, rung, deciding & ~finished)
    pruned = deciding & ~finished & ~promoted
    status = jnp.select([ep.nan, ep.stopped, finished, pruned], [NAN, STOPPED, FINISHED, PRUNED], RUNNING)
    s = s._replace(status=s.status.at[ep.t].set(status.astype(jnp.int32), mode="drop"))
    s = _crown(prog, s, finished, ep.lower, ep.t)
    return _refill(prog, pool, s, ep.nan | ep.stopped | finished | pruned)


def _crown(prog: Program, s: State, finished, lower, t) -> State:
    """Keeps the variables of the best trial that finished so far (zero-padded to the
    model's width; a tie goes to the lower slot)."""
    champion, champion_id = s.champion, s.champion_id
    for c, (first, k, width) in zip(s.carry, slots(prog), strict=True):
        candidate = jnp.where(finished[first : first + k], lower[first : first + k], jnp.inf)
        i = jnp.argmin(candidate)
        current = s.best[jnp.maximum(champion_id, 0)]
        wins = jnp.isfinite(candidate[i]) & ((champion_id < 0) | (candidate[i] < current))
        variables = jax.tree.map(lambda a, i=i: a[i, 0] if prog.folds else a[i], c.state.variables)  # cv: fold 0
        variables = variables if width is None else _widths.widen(variables, champion)
        champion = jax.tree.map(lambda a, b, wins=wins: jnp.where(wins, a, b), variables, champion)
        champion_id = jnp.where(wins, t[first + i], champion_id)
    return s._replace(champion=champion, champion_id=champion_id)


def _refill(prog: Program, pool: Pool, s: State, free) -> State:
    """Free slots take the next configurations of their bucket's queue, in slot order."""
    carry, trial, taken, status = [], [], [], s.status
    for b, (c, (first, k, width)) in enumerate(zip(s.carry, slots(prog), strict=True)):
        f = free[first : first + k]
        at = s.taken[b] + jnp.cumsum(f) - 1
        new_t = pool.queue[b].at[at].get(mode="fill", fill_value=prog.n)
        ok = f & (new_t < prog.n)
        trial.append(jnp.where(f, jnp.where(ok, new_t, -1), s.trial[first : first + k]).astype(jnp.int32))
        carry.append(_select(ok, _fresh_slots(prog, pool, trial[-1], width), c))
        taken.append(s.taken[b] + ok.sum())
        status = status.at[jnp.where(ok, new_t, prog.n)].set(RUNNING, mode="drop")
    taken = jnp.stack(taken).astype(jnp.int32)
    return s._replace(carry=tuple(carry), trial=jnp.concatenate(trial), next=taken.sum(), taken=taken, status=status)


def _pbt_tick(prog: Program, data, pool: Pool, s: State) -> State:
    s, ep = _train(prog, data, s, latest=True)
    live = ep.t < prog.n
    epoch = ep.epoch.max()  # every slot trains every epoch
    finished = live & (ep.epoch >= prog.rungs[-1])
    last = jnp.where(ep.nan, NAN, jnp.where(ep.stopped, STOPPED, FINISHED))
    s = s._replace(status=s.status.at[jnp.where(finished, ep.t, prog.n)].set(last.astype(jnp.int32), mode="drop"))
    s = _crown(prog, s, finished & ~ep.nan & ~ep.stopped, ep.lower, ep.t)
    s = s._replace(trial=jnp.where(finished, -1, s.trial))
    exploit = (epoch % prog.pbt.interval == 0) & (epoch < prog.rungs[-1])
    return jax.lax.cond(exploit, lambda s: _exploit(prog, pool, s, ep, epoch), lambda s: s, s)


def _exploit(prog: Program, pool: Pool, s: State, ep: Epoch, epoch) -> State:
    """The worst ``q`` slots copy a random one of the best ``q`` and explore."""
    q = prog.pbt.replaced(prog.k)
    key = jax.random.fold_in(pool.explore, epoch)
    order = jnp.argsort(ep.lower, stable=True)  # best first; non-finite last
    worst, best = order[prog.k - q :], order[:q]
    source = best[jax.random.randint(jax.random.fold_in(key, 0), (q,), 0, q)]
    new_t = s.next + jnp.arange(q, dtype=jnp.int32)
    parent = s.trial[source]
    drawn = dict(s.drawn)
    for j, (name, dist) in enumerate(prog.space):
        k = jax.random.fold_in(key, j + 1)
        kr, kf, kd = jax.random.split(k, 3)
        factors = jnp.asarray(prog.pbt.perturb, jnp.float32)
        factor = factors[jax.random.randint(kf, (q,), 0, len(prog.pbt.perturb))]
        again = jax.vmap(dist.draw)(jax.random.split(kd, q))
        moved = dist.perturb(drawn[name][parent], factor)
        drawn[name] = (
            drawn[name].at[new_t].set(jnp.where(jax.random.uniform(kr, (q,)) < prog.pbt.resample, again, moved))
        )
    (slots_carry,) = s.carry  # PBT: one bucket
    copied = jax.tree.map(lambda a: a[source], slots_carry)
    copied = copied._replace(state=_explored_state(prog, copied.state, drawn, new_t))
    carry = (jax.tree.map(lambda a, b: a.at[worst].set(b), slots_carry, copied),)
    return s._replace(
        carry=carry,
        trial=s.trial.at[worst].set(new_t),
        next=s.next + q,
        drawn=drawn,
        status=s.status.at[s.trial[worst]].set(jnp.where(ep.nan[worst], NAN, PRUNED)).at[new_t].set(RUNNING),
        parent=s.parent.at[new_t].set(parent),
        epochs=s.epochs.at[new_t].set(s.epochs[parent]),
        best=s.best.at[new_t].set(s.best[parent]),
        curve=s.curve.at[new_t].set(s.curve[parent]),
    )


def _explored_state(prog: Program, state: TrainState, drawn: dict, new_t) -> TrainState:
    """The copied states with the new members' values written in."""
    values = {n: value(prog, drawn, n, new_t) for n in prog.optimizer_names}
    set_values = lambda o, v: _per_fold(prog, lambda of: optim.set_hyperparams(of, v))(o)
    opt_state = jax.vmap(set_values)(state.opt_state, values) if values else state.opt_state
    set_state = lambda ms, t: _per_fold(prog, lambda m: _model_state(prog, m, drawn, t))(ms)
    model_state = jax.vmap(set_state)(state.model_state, new_t)
    return state._replace(opt_state=opt_state, model_state=model_state)


def chunk(prog: Program, s: State, data, pool: Pool):
    """Up to ``prog.chunk`` epochs of the search (nothing once every slot is idle).
    Returns the state and ``[live slots, highest rung reached, trials decided (PBT:
    epochs)]`` (one int32 array: one transfer) for the host."""
    tick = _halving_tick if prog.pbt is None else _pbt_tick

    def body(s, _):
        return jax.lax.cond((s.trial >= 0).any(), lambda s: tick(prog, data, pool, s), lambda s: s, s), None

    s, _ = jax.lax.scan(body, s, None, length=prog.chunk)
    rungs = jnp.arange(len(prog.rungs), dtype=jnp.int32)
    rung = jnp.max(jnp.where(s.reached.any(axis=0), rungs, -1))
    done = s.epochs.max() if prog.pbt is not None else (s.status >= PRUNED).sum()  # trials decided
    return s, jnp.stack([(s.trial >= 0).sum(), rung, done]).astype(jnp.int32)  # one transfer


def draw(space_: tuple, keys: jax.Array) -> dict:
    """Each configuration's values (a choice's index) from its key's ``config``
    stream: the ``j``-th name (sorted) from ``fold_in(stream(key, "config"), j)``."""

    def one(k):
        base = rng.stream(k, "config")
        return {name: dist.draw(jax.random.fold_in(base, j)) for j, (name, dist) in enumerate(space_)}

    return jax.vmap(one)(keys)


def _keys(key: jax.Array, n: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(rng.stream(key, "search"), i))(jnp.arange(n, dtype=jnp.uint32))


def widths(space_: tuple, key: jax.Array, n: int) -> jax.Array:
    """The ``n`` configurations' widths (their values, not indices): the buckets are made from them."""
    return space.value_on_device(dict(space_)["width"], draw(space_, _keys(key, n))["width"])


def begin(prog: Program, key: jax.Array, bracket: jax.Array, drawn_n: int) -> tuple[Pool, State]:
    """The pool (every trial's key; the first ``drawn_n`` configurations' values and
    initial variables) and the first state, in one program."""
    keys = _keys(key, prog.n)
    drawn = draw(prog.space, keys[:drawn_n])
    inits = initial_variables(prog, keys[:drawn_n], drawn)
    if prog.n > drawn_n:  # PBT: the copies' values are written in as they are made
        drawn = {name: jnp.zeros(prog.n, jnp.float32).at[:drawn_n].set(v) for name, v in drawn.items()}
    queue = jnp.arange(prog.n, dtype=jnp.int32)[None]
    if prog.buckets:
        queue = _widths.queues(prog.buckets, space.value_on_device(dict(prog.space)["width"], drawn["width"]))
    pool = Pool(inits, keys, drawn, bracket, rng.stream(key, "explore"), queue)
    return pool, start(prog, pool)


# Run once per search: compiled without LLVM's optimisation, in half the time (0.7 s, not 1.6, on a 2-core CPU).
_ONCE = {"xla_backend_optimization_level": 0}
run_widths = jax.jit(widths, static_argnums=(0, 2), compiler_options=_ONCE)
run_begin = jax.jit(begin, static_argnums=(0, 3), compiler_options=_ONCE)
run_chunk = jax.jit(chunk, static_argnums=0, donate_argnums=1)
