"""The compiled search behind ``jaxnn.search`` (private; ``jaxnn.tune._search`` is the API).

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

Each scheduler (``jaxnn.tune.schedulers``) writes its own tick from the pieces here:
an epoch of every live slot (:func:`train_epoch`), the champion (:func:`crown`) and the
refill of free slots (:func:`refill`). The host only launches chunks of epochs and
reads three numbers (one array) per chunk.
"""

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import _loop, _models, _programs, rng
from jaxnn.initializers import FAN_MODE, default_initializer, get_initializer
from jaxnn.mlp import from_spec
from jaxnn.options import Stop, TrainState, TrialStatus
from jaxnn.tune import _buckets
from jaxnn.tune.space import Listed


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a search: one compiled program per distinct value."""

    plan: _loop.Plan
    # the model's init; None: a jaxnn.mlp's, rebuilt from mlp_spec (equal by value)
    init: Callable | None
    mlp_spec: tuple  # a jaxnn.mlp's spec as sorted (name, value) pairs (jaxnn.mlp.from_spec), or ()
    space: tuple  # ((name, distribution), ...)
    optimizer_names: tuple  # the names of the space that are the optimizer's hyperparameters
    fixed: tuple  # ((name, value), ...): the optimizer's other hyperparameters
    schedule: Any  # a scheduler of jaxnn.tune.schedulers: its rungs, and its tick inside the chunk
    trials: int  # trials (PBT: the population and every member that replaced one)
    slots: int
    monitor: str
    sign: float  # 1.0: lower is better; -1.0: higher is better
    chunk: int
    # cv: every slot trains this many copies, one per fold (0: one, on the validation split)
    folds: int = 0
    # jaxnn.tune._buckets.Bucket s (width or batch-size buckets); (): every slot at full width, batch_size
    buckets: tuple = ()

    @property
    def rungs(self) -> tuple:
        """The epochs at which trials are ranked; the last is the budget."""
        return self.schedule.rungs()


class Pool(NamedTuple):
    """The configurations: every one's initial variables (stacked), key, drawn values
    (a choice's index; name -> (N,)) and bracket, the key PBT explores with, and each
    bucket's queue (``(B, N)``: its trials in id order, then ``N``)."""

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
    # (N, R) float32, lower is better: best so far at each rung reached (inf: not reached)
    scores: jax.Array
    reached: jax.Array  # (N, R) bool
    curve: jax.Array  # (N, E) float32: the monitored value after each epoch (NaN: not trained)
    fold_curve: jax.Array  # (N, E, F) float32: with cv, each fold's (F = 0 without)
    status: jax.Array  # (N,) int32
    epochs: jax.Array  # (N,) int32
    best: jax.Array  # (N,) float32, lower is better: best so far (PBT: the last value)
    parent: jax.Array  # (N,) int32: the trial a PBT member copied (-1: none)
    champion: Any  # variables of the best finished trial
    champion_id: jax.Array  # () int32 (-1: none yet)


def value(prog: Program, drawn: dict, name: str, t):
    """Trial ``t``'s value of ``name`` (a choice's option, not its index)."""
    return dict(prog.space)[name].on_device(drawn[name][t])


def _spec_model(prog: Program, width: int | None = None, activation: str | None = None):
    spec = dict(prog.mlp_spec)
    if width is not None:
        spec["sizes"] = list(_buckets.hidden(spec["sizes"], width))
    if activation is not None:
        spec["activation"] = activation
    return from_spec(spec)


def bucket_slots(prog: Program) -> tuple:
    """``((first slot, slots, width or None, plan), ...)``: each bucket's part of the
    slots, and the plan of its epoch (its batch size's)."""
    if not prog.buckets:
        return ((0, prog.slots, None, prog.plan),)
    firsts = itertools.accumulate((b.slots for b in prog.buckets), initial=0)
    plan = lambda b: (
        prog.plan
        if b.batch is None
        else prog.plan._replace(batch_size=b.batch, n_batches=b.n_batches, unroll=b.unroll)
    )
    return tuple(
        (first, b.slots, b.width, plan(b)) for first, b in zip(firsts, prog.buckets, strict=False)
    )


def _initial_variables(prog: Program, key: jax.Array, width, activation):
    """The trial's initial variables: the model's, or (an ``activation`` search) the
    model's with the chosen activation (its default initializer may differ), of
    which (a ``width`` search) its first ``width`` hidden units, scaled to be
    distributed as a ``width``-wide network's own initial weights (its fans are
    smaller), the other units zero."""
    if activation is None or prog.init is not None:  # the model's own init serves every option
        return _initial_as(prog, key, width, None)
    names = dict(prog.space)["activation"].options
    each = [_initial_as(prog, key, width, name) for name in names]
    index = activation.astype(jnp.int32)
    return jax.tree.map(lambda *options: jnp.stack(options)[index], *each)


def _initial_as(prog: Program, key: jax.Array, width, activation_: str | None):
    full = (prog.init or _spec_model(prog, activation=activation_).init)(key)
    if width is None:
        return full
    spec = dict(prog.mlp_spec)
    sizes, activation, output_activation = (
        spec["sizes"],
        activation_ or spec["activation"],
        spec["output_activation"],
    )
    init_name = spec.get("init")
    w = dict(prog.space)["width"].on_device(width)
    layers = full["params"] if isinstance(full, dict) else full
    acts = [activation] * (len(sizes) - 2) + [output_activation]
    narrowed = []
    for i, (layer, act) in enumerate(zip(layers, acts, strict=True)):
        n_in, n_out = sizes[i], sizes[i + 1]
        w_in = n_in if i == 0 else w
        w_out = n_out if i == len(acts) - 1 else w
        keep_in, keep_out = jnp.arange(n_in) < w_in, jnp.arange(n_out) < w_out
        mode = FAN_MODE[id(get_initializer(init_name) if init_name else default_initializer(act))]
        scale = (
            jnp.sqrt(n_in / w_in) if mode == "fan_in" else jnp.sqrt((n_in + n_out) / (w_in + w_out))
        )
        kernel = layer["w"] * scale * (keep_in[:, None] & keep_out[None, :])
        narrowed.append(
            {
                **{k: v * keep_out for k, v in layer.items() if k != "w"},
                "w": kernel.astype(layer["w"].dtype),
            }
        )
    return {**full, "params": narrowed} if isinstance(full, dict) else narrowed


def initial_variables(prog: Program, keys: jax.Array, drawn: dict):
    """Every configuration's initial variables, stacked (one program for the pool:
    a slot's refill then only gathers its row)."""
    chosen = {n: drawn[n] for n in ("width", "activation") if n in drawn}
    one = lambda k, c: _initial_variables(
        prog, rng.stream(k, "init"), c.get("width"), c.get("activation")
    )
    return jax.vmap(one)(keys, chosen)


def model_state(prog: Program, state, drawn: dict, t):
    """The model state with trial ``t``'s values of the names the model reads."""
    extra = {
        ("dropout_rate" if n == "dropout" else n): value(prog, drawn, n, t) for n, _ in prog.space
    }
    extra = {n: v for n, v in extra.items() if n not in (*prog.optimizer_names, "batch_size")}
    return {**(state or {}), **extra} or None


def fresh_carry(prog: Program, pool: Pool, t, width: int | None = None) -> _loop.Carry:
    """The carry of trial ``t`` starting: its key, its initial params (the first
    ``width`` units of its hidden layers), its hyperparameters in a fresh optimizer state."""
    variables = jax.tree.map(lambda a: a[t], pool.inits)
    if width is not None:
        variables = _buckets.narrow(
            variables, jax.eval_shape(_spec_model(prog, width).init, pool.keys[0])
        )
    params, own_state = _models.split_variables(prog.plan.apply_fn, variables)
    zero = jnp.zeros((), jnp.int32)
    state = TrainState(
        params, None, zero, zero, pool.keys[t], model_state(prog, own_state, pool.drawn, t)
    )
    values = {
        **dict(prog.fixed),
        **{n: value(prog, pool.drawn, n, t) for n in prog.optimizer_names},
    }
    return _loop.initial_carry(prog.plan, state, values)


def per_fold(prog: Program, fn):
    """``fn`` over the folds' axis (cv), or ``fn`` itself."""
    return jax.vmap(fn) if prog.folds else fn


def fresh_slots(prog: Program, pool: Pool, trial, width=None):
    def one(t):
        carry = fresh_carry(prog, pool, t, width)
        # a copy per fold
        return jax.vmap(lambda _: carry)(jnp.arange(prog.folds)) if prog.folds else carry

    return jax.vmap(one)(jnp.clip(trial, 0, prog.trials - 1))


def start(prog: Program, pool: Pool) -> State:
    """The search's first state: each bucket's slots train the first trials of its queue."""
    n, r, e = prog.trials, len(prog.rungs), prog.rungs[-1]
    carry, trial = [], []
    for b, (_, k, width, _) in enumerate(bucket_slots(prog)):
        t = pool.queue[b].at[jnp.arange(k)].get(mode="fill", fill_value=n)
        trial.append(jnp.where(t < n, t, -1).astype(jnp.int32))  # more slots than trials: idle
        carry.append(fresh_slots(prog, pool, trial[-1], width))
    trial = jnp.concatenate(trial)
    full = jax.eval_shape(lambda p: fresh_carry(prog, p, 0).state.variables, pool)
    return State(
        carry=tuple(carry),
        trial=trial,
        next=(trial >= 0).sum().astype(jnp.int32),
        taken=jnp.stack([(t >= 0).sum() for t in jnp.split(trial, _firsts(prog))]).astype(
            jnp.int32
        ),
        drawn=pool.drawn,
        scores=jnp.full((n, r), jnp.inf, jnp.float32),
        reached=jnp.zeros((n, r), bool),
        curve=jnp.full((n, e), jnp.nan, jnp.float32),
        fold_curve=jnp.full((n, e, prog.folds), jnp.nan, jnp.float32),
        status=jnp.full((n,), TrialStatus.PENDING, jnp.int32)
        .at[jnp.where(trial >= 0, trial, n)]
        .set(TrialStatus.RUNNING, mode="drop"),
        epochs=jnp.zeros((n,), jnp.int32),
        best=jnp.full((n,), jnp.inf, jnp.float32),
        parent=jnp.full((n,), -1, jnp.int32),
        champion=jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), full),
        champion_id=jnp.int32(-1),
    )


def _firsts(prog: Program) -> list:
    """Where each bucket's slots start, after the first (``jnp.split``'s indices)."""
    return [first for first, *_ in bucket_slots(prog)[1:]]


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


def train_epoch(prog: Program, data, s: State, latest: bool) -> tuple[State, Epoch]:
    """One epoch in every live slot, recorded in the trials' table (``best``: the best
    so far, or with ``latest`` the last value)."""
    live = s.trial >= 0
    carry, parts = [], []
    for c, alive, (*_, plan) in zip(
        s.carry, jnp.split(live, _firsts(prog)), bucket_slots(prog), strict=True
    ):  # each bucket
        epoch_of = lambda c, d, plan=plan: _loop.one_epoch(plan, d, c)
        one = jax.vmap(epoch_of) if prog.folds else epoch_of  # cv: each fold its own data

        def run(c, alive=alive, one=one, plan=plan):
            new, records, _ = jax.vmap(lambda c: one(c, data), axis_name=plan.axis_name)(c)
            return _loop.select(alive, new, c), records[prog.monitor]

        if len(s.carry) > 1:  # a bucket whose slots are all idle skips its epoch
            # the monitored values' shape: one per slot (and fold), as run's
            shape = (alive.shape[0], prog.folds) if prog.folds else alive.shape
            idle = lambda c, shape=shape: (c, jnp.full(shape, jnp.nan, jnp.float32))
            new, v = jax.lax.cond(alive.any(), run, idle, c)
        else:
            new, v = run(c)
        carry.append(new)
        parts.append((v, new.state.epoch, new.stop))
    v, epoch, stop = (jnp.concatenate(a) for a in zip(*parts, strict=True))
    t = jnp.where(live, s.trial, prog.trials)  # index n: dropped by the scatters
    if prog.folds:  # scored by the mean over the folds
        s = s._replace(fold_curve=s.fold_curve.at[t, epoch[:, 0] - 1].set(v, mode="drop"))
        v, epoch = v.mean(axis=1), epoch[:, 0]
        stop = jnp.where(
            (stop == Stop.NON_FINITE_LOSS).any(axis=1), Stop.NON_FINITE_LOSS, stop.max(axis=1)
        )
    lower = jnp.where(jnp.isfinite(v), prog.sign * v, jnp.inf)
    best = (
        lower if latest else jnp.minimum(s.best.at[t].get(mode="fill", fill_value=jnp.inf), lower)
    )
    nan = live & (stop == Stop.NON_FINITE_LOSS)
    stopped = live & (stop == Stop.EARLY_STOPPING) & ~nan
    s = s._replace(
        carry=tuple(carry),
        best=s.best.at[t].set(best, mode="drop"),
        epochs=s.epochs.at[t].set(epoch, mode="drop"),
        curve=s.curve.at[t, epoch - 1].set(v, mode="drop"),
    )
    return s, Epoch(t, epoch, v, best, nan, stopped)


def crown(prog: Program, s: State, finished, lower, t) -> State:
    """Keeps the variables of the best trial that finished so far (zero-padded to the
    model's width; a tie goes to the lower slot)."""
    champion, champion_id = s.champion, s.champion_id
    for c, (first, k, width, _) in zip(s.carry, bucket_slots(prog), strict=True):
        candidate = jnp.where(finished[first : first + k], lower[first : first + k], jnp.inf)
        i = jnp.argmin(candidate)
        current = s.best[jnp.maximum(champion_id, 0)]
        wins = jnp.isfinite(candidate[i]) & ((champion_id < 0) | (candidate[i] < current))
        # cv: fold 0
        variables = jax.tree.map(lambda a, i=i: a[i, 0] if prog.folds else a[i], c.state.variables)
        variables = variables if width is None else _buckets.widen(variables, champion)
        champion = jax.tree.map(lambda a, b, wins=wins: jnp.where(wins, a, b), variables, champion)
        champion_id = jnp.where(wins, t[first + i], champion_id)
    return s._replace(champion=champion, champion_id=champion_id)


def refill(prog: Program, pool: Pool, s: State, free) -> State:
    """Free slots take the next configurations of their bucket's queue, in slot order."""
    carry, trial, taken, status = [], [], [], s.status
    for b, (c, (first, k, width, _)) in enumerate(zip(s.carry, bucket_slots(prog), strict=True)):
        f = free[first : first + k]
        at = s.taken[b] + jnp.cumsum(f) - 1
        new_t = pool.queue[b].at[at].get(mode="fill", fill_value=prog.trials)
        ok = f & (new_t < prog.trials)
        trial.append(
            jnp.where(f, jnp.where(ok, new_t, -1), s.trial[first : first + k]).astype(jnp.int32)
        )
        carry.append(_loop.select(ok, fresh_slots(prog, pool, trial[-1], width), c))
        taken.append(s.taken[b] + ok.sum())
        status = status.at[jnp.where(ok, new_t, prog.trials)].set(TrialStatus.RUNNING, mode="drop")
    taken = jnp.stack(taken).astype(jnp.int32)
    return s._replace(
        carry=tuple(carry),
        trial=jnp.concatenate(trial),
        next=taken.sum(),
        taken=taken,
        status=status,
    )


def chunk(prog: Program, s: State, data, pool: Pool):
    """Up to ``prog.chunk`` epochs of the search (nothing once every slot is idle).
    Returns the state and ``[live slots, highest rung reached, trials decided (PBT:
    epochs)]`` (one int32 array: one transfer) for the host."""

    def body(s, _):
        tick = lambda s: prog.schedule.tick(prog, data, pool, s)
        return jax.lax.cond((s.trial >= 0).any(), tick, lambda s: s, s), None

    s, _ = jax.lax.scan(body, s, None, length=prog.chunk)
    rungs = jnp.arange(len(prog.rungs), dtype=jnp.int32)
    rung = jnp.max(jnp.where(s.reached.any(axis=0), rungs, -1))
    done = prog.schedule.decided(s)
    return s, jnp.stack([(s.trial >= 0).sum(), rung, done]).astype(jnp.int32)  # one transfer


def draw(space_: tuple, keys: jax.Array) -> dict:
    """Each configuration's values (a choice's index) from its key's ``config``
    stream: the ``j``-th name (sorted) from ``fold_in(stream(key, "config"), j)``;
    a listed name's from the configuration's place in the list."""

    def one(k, i):
        base = rng.stream(k, "config")
        return {
            name: dist.take(i)
            if isinstance(dist, Listed)
            else dist.draw(jax.random.fold_in(base, j))
            for j, (name, dist) in enumerate(space_)
        }

    return jax.vmap(one)(keys, jnp.arange(keys.shape[0]))


def _keys(key: jax.Array, n: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(rng.stream(key, "search"), i))(
        jnp.arange(n, dtype=jnp.uint32)
    )


SHAPES = ("width", "batch_size")  # the names that set a shape: buckets are made from them


def _shape_values(space_: tuple, drawn: dict) -> dict:
    """The drawn values (not indices) of the names of ``SHAPES`` searched."""
    dists = dict(space_)
    return {name: dists[name].on_device(drawn[name]) for name in SHAPES if name in dists}


def shapes(space_: tuple, key: jax.Array, n: int) -> dict:
    """The ``n`` configurations' values of the names of ``SHAPES`` searched."""
    return _shape_values(space_, draw(space_, _keys(key, n)))


def begin(prog: Program, key: jax.Array, bracket: jax.Array, drawn_n: int) -> tuple[Pool, State]:
    """The pool (every trial's key; the first ``drawn_n`` configurations' values and
    initial variables) and the first state, in one program."""
    keys = _keys(key, prog.trials)
    drawn = draw(prog.space, keys[:drawn_n])
    inits = initial_variables(prog, keys[:drawn_n], drawn)
    if prog.trials > drawn_n:  # PBT: the copies' values are written in as they are made
        drawn = {
            name: jnp.zeros(prog.trials, jnp.float32).at[:drawn_n].set(v)
            for name, v in drawn.items()
        }
    queue = jnp.arange(prog.trials, dtype=jnp.int32)[None]
    if prog.buckets:
        values = _shape_values(prog.space, drawn)
        queue = _buckets.queues(
            prog.buckets, values.get("width"), values.get("batch_size"), prog.trials
        )
    pool = Pool(inits, keys, drawn, bracket, rng.stream(key, "explore"), queue)
    return pool, start(prog, pool)


# Run once per search: compiled without LLVM's optimisation, in half the time (0.7 s, not 1.6, on a 2-core CPU).
_ONCE = {"xla_backend_optimization_level": 0}
run_shapes = _programs.jit("search.shapes", shapes, (0, 2), compiler_options=_ONCE)
run_begin = _programs.jit("search.begin", begin, (0, 3), compiler_options=_ONCE)
run_chunk = _programs.jit("search.chunk", chunk, donate_argnums=1)
