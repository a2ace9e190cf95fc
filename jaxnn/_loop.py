"""The compiled training loop behind ``jaxnn.fit`` (private; ``jaxnn.train`` is the API).

One call of ``run_chunk`` trains ``plan.chunk`` epochs inside XLA: per epoch a
permutation from ``stream(key, "shuffle")`` and the epoch, a ``lax.scan`` over fixed-shape
batches gathered on the device (the last one padded and masked), validation, early
stopping and the NaN guard. Epochs past the target or after a stop are skipped with
``lax.cond``, so the number of epochs is data and never causes a recompile.
"""

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import _optim, _programs, rng
from jaxnn._records import epoch_end, record_template
from jaxnn._shuffle import shuffled_order
from jaxnn.distributed import fetch
from jaxnn.options import Stop, TrainState


class Plan(NamedTuple):
    """Static description of a fit: hashable, one compiled program per distinct plan."""

    apply_fn: Callable
    loss_fn: Callable
    tx: optax.GradientTransformation
    metrics: tuple  # ((name, fn), ...)
    n: int
    batch_size: int
    n_batches: int
    shuffle: bool
    n_val: int
    eval_batch: int
    chunk: int
    early: Any  # EarlyStopping | None, with mode resolved to "min" or "max"
    unroll: int
    # rows per step: batch_size rounded up to a multiple of the devices (0: batch_size)
    step_rows: int = 0
    batch_sharding: Any = None  # NamedSharding that splits a batch's rows over the devices, or None
    axis_name: str | None = None  # set when the loop is vmapped over many models (jaxnn.sweep)
    # gather the epoch's rows once (then slice batches), not each batch's rows
    gather_epoch: bool = False


class Carry(NamedTuple):
    """The loop's carry: the train state plus early-stopping and stop bookkeeping."""

    state: TrainState
    best_params: Any  # variables (params and model state) of the best epoch so far; () without early stopping
    best: jax.Array  # shape=(), float32: best monitored value so far
    wait: jax.Array  # shape=(), int32: epochs since the monitored value improved
    stop: jax.Array  # shape=(), int32: a jaxnn.Stop code (COMPLETED while running)
    stop_step: jax.Array  # shape=(), int32: the update (1-based) whose loss was non-finite


def make_train_step(apply_fn, loss_fn, tx):
    """``train_step(state, batch) -> (state, {"loss": ...})``; see ``jaxnn.make_train_step``.

    A model with a training mode (``apply_fn.train_apply(variables, x, key) -> (y,
    updated collections)``: dropout, batch norm) runs in it, with the step's key from
    the ``dropout`` stream (``jaxnn.rng``), and its updated state is carried on."""
    train_apply = getattr(apply_fn, "train_apply", None)

    def train_step(state: TrainState, batch):
        x, y, *weights = batch

        def objective(params):  # forward pass, then the loss
            if train_apply is None:
                return loss_fn(apply_fn(params, x), y, *weights), state.model_state
            key = jax.random.fold_in(rng.stream(state.key, "dropout"), state.step)
            pred, updates = train_apply(state._replace(params=params).variables, x, key)
            model_state = None if state.model_state is None else {**state.model_state, **updates}
            return loss_fn(pred, y, *weights), model_state

        # backward pass
        (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state._replace(
            params=params, opt_state=opt_state, step=state.step + 1, model_state=model_state
        )
        return new, {"loss": loss}

    return train_step


def initial_carry(plan: Plan, state: TrainState, hyperparams: dict) -> Carry:
    """The loop's carry from ``state`` (``opt_state=None``: a fresh optimizer state),
    with the optimizer's ``hyperparams`` written into its state."""
    # Copies: train_chunk donates its carry, and the caller keeps its own params.
    params = jax.tree.map(jnp.copy, state.params)
    opt_state = (
        plan.tx.init(params) if state.opt_state is None else jax.tree.map(jnp.copy, state.opt_state)
    )
    opt_state = _optim.set_hyperparams(opt_state, hyperparams)  # hyperparameters as data
    step, epoch = (jnp.copy(jnp.asarray(v, jnp.int32)) for v in (state.step, state.epoch))
    state = TrainState(
        params, opt_state, step, epoch, state.key, jax.tree.map(jnp.copy, state.model_state)
    )
    early = plan.early
    best = jnp.float32(np.inf if early is None or early.mode == "min" else -np.inf)
    best_params = jax.tree.map(jnp.copy, state.variables) if early is not None else ()
    wait, stop_step = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    # Checked here, inside the first compiled call, so a good run pays no extra sync.
    finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree.leaves(params)]))
    stop = jnp.where(finite, Stop.COMPLETED, Stop.NON_FINITE_PARAMS).astype(jnp.int32)
    return Carry(state, best_params, best, wait, stop, stop_step)


def _copy_key(key: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(
        jnp.copy(jax.random.key_data(key)), impl=jax.random.key_impl(key)
    )


def copy_key(key: jax.Array) -> jax.Array:
    """A copy of ``key``: :func:`start` passes the key through unchanged and
    ``run_chunk`` donates the carry, which would delete the caller's key."""
    return _copied_key(key)


def with_hyperparams(carry: Carry, hyperparams: dict) -> Carry:
    """``carry`` with the optimizer's ``hyperparams`` written into its state."""
    state = carry.state
    return carry._replace(
        state=state._replace(opt_state=_optim.set_hyperparams(state.opt_state, hyperparams))
    )


def select(pred, new, old):
    """``new`` where ``pred`` else ``old``, leaf by leaf: ``pred`` is a scalar, or one
    per entry of the leaves' leading axis (a search's slots). PRNG keys are selected
    too (a refilled slot takes its new trial's key)."""

    def pick(a, b):
        expand = lambda ndim: pred.reshape(pred.shape + (1,) * (ndim - pred.ndim))
        if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            if jnp.ndim(pred) == 0:  # one model: its key never changes within a run
                return b
            data = jnp.where(expand(b.ndim + 1), jax.random.key_data(a), jax.random.key_data(b))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(b))
        return jnp.where(expand(b.ndim), a, b)

    return jax.tree.map(pick, new, old)


def _any(plan: Plan, pred: jax.Array) -> jax.Array:
    """``pred`` for one model; under ``jaxnn.sweep``'s vmap, whether any model's is
    true, so that ``lax.cond`` stays a real branch instead of running both sides."""
    if plan.axis_name is None:
        return pred
    return jax.lax.pmax(pred.astype(jnp.int32), plan.axis_name) > 0


def all_finite(tree) -> jax.Array:
    # One fused reduction: NaN and inf propagate through a sum.
    return jnp.isfinite(sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree)))


def epoch_batches(plan: Plan, key: jax.Array, epoch: jax.Array):
    """Row indices ``(n_batches, batch_size)`` for ``epoch``, and the padding mask."""
    n, bs, nb = plan.n, plan.batch_size, plan.n_batches
    if plan.shuffle and nb > 1:  # one whole batch has the same gradient in any order
        order = shuffled_order(rng.stream(key, "shuffle"), n, epoch)
    else:
        order = jnp.arange(n, dtype=jnp.int32)
    total = nb * bs
    rows = plan.step_rows or bs
    if total <= n and rows == bs:  # every batch full (drop_remainder drops the tail)
        return order[:total].reshape(nb, bs), None
    # Padding repeats real rows (the epoch's first ones) with weight 0: they add nothing
    # to the loss or the gradient, and batch statistics see real data, not a filler row.
    order = order[jnp.arange(total) % n].reshape(nb, bs)
    mask = (jnp.arange(total) < n).astype(jnp.float32).reshape(nb, bs)
    if rows > bs:  # pad every batch to a multiple of the devices; the pad rows weigh 0
        order = jnp.pad(order, ((0, 0), (0, rows - bs)), mode="wrap")
        mask = jnp.pad(mask, ((0, 0), (0, rows - bs)))
    return order, mask


def _epoch_inputs(plan: Plan, data, start: TrainState):
    """The scan inputs of the epoch ``start`` begins, its padding mask (None: every
    row is real), and ``step(state, batch)``: one update, returning the new state and
    the batch's loss."""
    step_fn = make_train_step(plan.apply_fn, plan.loss_fn, plan.tx)
    x, y, w = data.x, data.y, data.w
    idx, mask = epoch_batches(plan, start.key, start.epoch)
    # Each step takes a batch of row indices and gathers its rows, or (gather_epoch)
    # the rows of the whole epoch are gathered once, in batch order, and each step
    # slices its batch, as a hand-written scan over pre-batched arrays does.
    inputs = (x[idx], y[idx]) if plan.gather_epoch else (idx,)
    weights = batch_weights(w, idx, mask)
    inputs = inputs if weights is None else (*inputs, weights)

    def step(state, batch):
        xb, yb, *m = batch if plan.gather_epoch else (x[batch[0]], y[batch[0]], *batch[1:])
        # data parallel: each device takes its rows of the batch
        if plan.batch_sharding is not None:
            xb, yb, *m = (
                jax.lax.with_sharding_constraint(a, plan.batch_sharding) for a in (xb, yb, *m)
            )
        state, metrics = step_fn(state, (xb, yb, *m))
        return state, metrics["loss"]

    return inputs, mask, step


def batch_weights(w, idx, mask):
    """The loss weights of batches of rows ``idx``: the sample weights ``w`` (or
    ``None``) times the padding ``mask`` (or ``None``); ``None`` when both are."""
    if w is None:
        return mask
    return w[idx] if mask is None else w[idx] * mask


def _train_epoch(plan: Plan, data, carry: Carry):
    """One pass over the data. The hot loop carries only the train state, and nothing
    here branches: the NaN guard reads the per-step losses afterwards, and a run that
    went non-finite stops, keeping its last state until :func:`replay` rewinds it to
    its last finite step. Returns the carry, the epoch's training loss and
    ``first_bad``: the first step whose loss was non-finite (``n_batches``: only the
    last update made the params non-finite), or -1."""
    inputs, mask, step = _epoch_inputs(plan, data, carry.state)
    end, losses = jax.lax.scan(step, carry.state, inputs, unroll=plan.unroll)
    return epoch_result(plan, carry, end, losses, mask)


def epoch_result(plan: Plan, carry: Carry, end: TrainState, losses: jax.Array, mask):
    """The carry after an epoch that began at ``carry.state`` and ended at ``end``
    with per-step ``losses`` and padding ``mask`` (``None``: every batch full); also
    the epoch's training loss and ``first_bad`` (see :func:`_train_epoch`)."""
    start, nb = carry.state, plan.n_batches
    finite = jnp.isfinite(losses)
    first_bad = jnp.where(
        finite.all(), jnp.where(all_finite(end.params), -1, nb), jnp.argmin(finite)
    )
    counts = mask.sum(axis=1) if mask is not None else jnp.full(nb, float(plan.batch_size))
    counts = jnp.where((first_bad < 0) | (jnp.arange(nb) < first_bad), counts, 0.0)
    total = counts.sum()
    train_loss = jnp.where(
        total > 0,
        (jnp.where(counts > 0, losses, 0.0) * counts).sum() / jnp.maximum(total, 1),
        jnp.nan,
    )
    bad = first_bad >= 0
    carry = carry._replace(
        state=end._replace(epoch=end.epoch + 1),
        stop=jnp.where(bad, Stop.NON_FINITE_LOSS, carry.stop),
        stop_step=jnp.where(bad, start.step + jnp.minimum(first_bad + 1, nb), carry.stop_step),
    )
    return carry, train_loss, first_bad


def replay(plan: Plan, carry: Carry, data, start: TrainState, first_bad: jax.Array) -> Carry:
    """``carry`` with the state after the last step whose params are finite: the epoch
    that went non-finite replayed from ``start`` (its first state), taking its first
    ``first_bad - 1`` steps, then step ``first_bad`` only if its params stay finite
    (its loss was non-finite, its update may not be). A separate program, run only
    after a run went non-finite, so a fit's compiled loop holds the step once."""
    inputs, _, step = _epoch_inputs(plan, data, start)

    def masked(state, xs):
        j, batch = xs
        new, _ = step(state, batch)
        take = (j < first_bad - 1) | ((j == first_bad - 1) & all_finite(new.params))
        return select(take, new, state), None

    s = jax.lax.scan(masked, start, (jnp.arange(plan.n_batches), inputs))[0]
    s = s._replace(epoch=carry.state.epoch)
    # in a sweep, the others keep theirs
    return carry._replace(state=select(first_bad >= 0, s, carry.state))


def one_epoch(plan: Plan, data, carry: Carry):
    start = carry.state
    carry, train_loss, first_bad = _train_epoch(plan, data, carry)
    carry, record = epoch_end(plan, data, carry, train_loss)
    return carry, record, (start, first_bad)


def _skip_epoch(plan: Plan, carry: Carry, rewind):  # keeps the last epoch's rewind point
    return carry, {**record_template(plan), "ran": jnp.bool_(False)}, rewind


def train_chunk(plan: Plan, carry: Carry, data, target_epochs: jax.Array):
    """Up to ``plan.chunk`` epochs (those before ``target_epochs`` while not stopped).
    Returns the carry, the per-epoch records, ``(epoch, stop)`` and ``(start,
    first_bad)``: the first state of the last epoch run and the step where it went
    non-finite (-1: it did not), for :func:`replay`."""

    def body(loop, _):
        carry, rewind = loop
        active = (carry.state.epoch < target_epochs) & (carry.stop == Stop.COMPLETED)
        new, rec, new_rewind = jax.lax.cond(
            _any(plan, active),
            lambda c, _: one_epoch(plan, data, c),
            lambda c, r: _skip_epoch(plan, c, r),
            carry,
            rewind,
        )
        if plan.axis_name is not None:  # models already done
            new, rec = select(active, new, carry), {**rec, "ran": rec["ran"] & active}
            new_rewind = select(active, new_rewind, rewind)
        return (new, new_rewind), rec

    rewind = (carry.state, jnp.int32(-1))
    (carry, rewind), records = jax.lax.scan(body, (carry, rewind), None, length=plan.chunk)
    return carry, records, (carry.state.epoch, carry.stop), rewind


def start_and_train_chunk(
    plan: Plan, state: TrainState, hyperparams: dict, data, target_epochs: jax.Array
):
    """:func:`initial_carry` and :func:`train_chunk` in one program: a run of one call
    (one dispatch, no separate start program). It returns no rewind state, only
    ``first_bad`` (eleven output buffers fewer for the seed network): a run that went
    non-finite trains again up to that epoch's start (see :func:`runner`). Nor does
    it return the key, which training never changes: the caller's goes back in."""
    carry, records, status, (_, first_bad) = train_chunk(
        plan, initial_carry(plan, state, hyperparams), data, target_epochs
    )
    return carry._replace(state=carry.state._replace(key=None)), records, status, first_bad


_copied_key = _programs.jit("copy_key", _copy_key, ())
start = _programs.jit("fit.start", initial_carry)
run_chunk = _programs.jit("fit.chunk", train_chunk, donate_argnums=1)
run_fresh = _programs.jit("fit.fresh", start_and_train_chunk)
run_replay = _programs.jit("fit.replay", replay, donate_argnums=1)


class Fresh(NamedTuple):
    """A run not started yet, for a run of one call: :func:`runner` then builds the
    carry inside that call."""

    state: TrainState
    hyperparams: dict


class Chunk(NamedTuple):
    """What one compiled call (or one streamed epoch) gives back, on the host."""

    carry: Any
    records: dict  # name -> (..., chunk) float32; with many models NaN where one did not run
    ran: np.ndarray  # (..., chunk) bool
    epoch: np.ndarray  # () or (K,) int32: epochs completed
    stop: np.ndarray  # () or (K,) int32: Stop codes


class Runner(NamedTuple):
    """The protocol ``jaxnn._driver`` trains through: ``chunks(carry, data, epochs,
    done)`` yields one :class:`Chunk` per compiled call until every model has run
    ``epochs`` epochs or stopped (``done`` ran before). This one calls
    ``chunk(carry, data, target_epochs)`` for whole chunks of epochs in memory, and
    rewinds a chunk that went non-finite to its last finite step with ``replay(carry,
    data, start, first_bad)`` (see :func:`replay`; ``start`` is ``None`` after a run of
    one call, which returns no rewind state). ``jaxnn._stream.Streamed`` is the same
    protocol for data read from disk."""

    chunk: Callable
    replay: Callable

    def chunks(self, carry, data, epochs: int, done: int) -> Iterator[Chunk]:
        if done >= epochs:
            return
        target = np.int32(epochs)
        while True:
            carry, rec, status, (start, first_bad) = self.chunk(carry, data, target)
            rec, (epoch, stop), bad = fetch((rec, status, first_bad))  # the one sync per chunk
            if (bad >= 0).any():
                carry = self.replay(carry, data, start, first_bad)
            ran = rec.pop("ran")
            if ran.ndim > 1:  # many models: NaN where a model had stopped
                rec = {k: np.where(ran, v, np.float32(np.nan)) for k, v in rec.items()}
            yield Chunk(carry, rec, ran, epoch, stop)
            if not ((epoch < epochs) & (stop == Stop.COMPLETED)).any():
                return


def runner(plan: Plan) -> Runner:
    """The :class:`Runner` of ``fit``: one compiled chunk per call."""
    fresh = []  # the Fresh carry of a run of one call

    def one_call(run: Fresh, data, target):
        carry, records, status, first_bad = run_fresh(
            plan, run.state, run.hyperparams, data, target
        )
        return (
            carry._replace(state=carry.state._replace(key=run.state.key)),
            records,
            status,
            first_bad,
        )

    def chunk(carry, data, target):
        if isinstance(carry, Fresh):
            fresh.append(carry)
            carry, records, status, first_bad = one_call(carry, data, target)
            return carry, records, status, (None, first_bad)
        return run_chunk(plan, carry, data, target)

    def replay_(carry, data, start, first_bad):
        # the epoch's first state, from the same program stopped before that epoch
        if start is None:
            start = one_call(fresh[0], data, np.int32(fetch(carry.state.epoch) - 1))[0].state
            # the carry is donated: its key is copied
            carry = carry._replace(state=carry.state._replace(key=copy_key(carry.state.key)))
        return run_replay(plan, carry, data, start, first_bad)

    return Runner(chunk, replay_)


# fit_many: the same programs vmapped over the models' axis (plan.axis_name).
start_many = _programs.jit("fit_many.start", jax.vmap(initial_carry, in_axes=(None, 0, 0)))


def _chunk_many(plan: Plan, carry, data, target):
    return jax.vmap(lambda c: train_chunk(plan, c, data, target), axis_name=plan.axis_name)(carry)


def _replay_many(plan: Plan, carry, data, start, first_bad):
    return jax.vmap(lambda c, s, b: replay(plan, c, data, s, b), axis_name=plan.axis_name)(
        carry, start, first_bad
    )


run_chunk_many = _programs.jit("fit_many.chunk", _chunk_many, donate_argnums=1)
run_replay_many = _programs.jit("fit_many.replay", _replay_many, donate_argnums=1)


def many_runner(plan: Plan) -> Runner:
    """The :class:`Runner` of ``fit_many``: K models in each compiled chunk."""
    return Runner(
        lambda c, d, t: run_chunk_many(plan, c, d, t),
        lambda c, d, s, b: run_replay_many(plan, c, d, s, b),
    )
