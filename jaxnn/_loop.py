"""The compiled training loop behind ``jaxnn.fit`` (private; ``jaxnn.train`` is the API).

One call of ``run_chunk`` trains ``plan.chunk`` epochs inside XLA: per epoch a
permutation from ``fold_in(fold_in(key, 0), epoch)``, a ``lax.scan`` over fixed-shape
batches gathered on the device (the last one padded and masked), validation, early
stopping and the NaN guard. Epochs past the target or after a stop are skipped with
``lax.cond``, so the number of epochs is data and never causes a recompile.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import optim
from jaxnn.distributed import fetch


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree.

    Attributes:
      params: the model's parameters.
      opt_state: the optimizer's state.
      step: shape=(), int32: updates applied so far.
      epoch: shape=(), int32: epochs completed so far.
      key: shape=(), PRNG key: the run's root key (fixed; epochs fold into it).
    """

    params: Any
    opt_state: Any
    step: jax.Array
    epoch: jax.Array
    key: jax.Array


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
    step_rows: int = 0  # rows per step: batch_size rounded up to a multiple of the devices (0: batch_size)
    batch_sharding: Any = None  # NamedSharding that splits a batch's rows over the devices, or None
    axis_name: str | None = None  # set when the loop is vmapped over many models (jaxnn.sweep)


class Carry(NamedTuple):
    """The loop's carry: the train state plus early-stopping and stop bookkeeping."""

    state: TrainState
    best_params: Any  # params of the best epoch so far; () without early stopping
    best: jax.Array  # shape=(), float32: best monitored value so far
    wait: jax.Array  # shape=(), int32: epochs since the monitored value improved
    stop: jax.Array  # shape=(), int32: 0 running, 1 early stopped, 2 non-finite loss, 3 non-finite initial params
    stop_step: jax.Array  # shape=(), int32: the update (1-based) whose loss was non-finite


def make_train_step(apply_fn, loss_fn, tx):
    """``train_step(state, batch) -> (state, {"loss": ...})``; see ``jaxnn.make_train_step``."""

    def train_step(state: TrainState, batch):
        x, y, *weights = batch

        def objective(params):
            return loss_fn(apply_fn(params, x), y, *weights)  # forward pass, then the loss

        loss, grads = jax.value_and_grad(objective)(state.params)  # backward pass
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), {"loss": loss}

    return train_step


NON_FINITE_PARAMS = 3


def non_finite_params_error(params) -> ValueError:
    """The error for initial params with NaN or inf, naming the first bad leaf."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if not np.isfinite(np.asarray(leaf)).all():
            return ValueError(
                f"params{jax.tree_util.keystr(path)} has non-finite values (NaN or inf); expected finite "
                "initial parameters (e.g. from model.init(key))"
            )
    return ValueError("params have non-finite values (NaN or inf); expected finite initial parameters")


def _start(plan: Plan, params, learning_rate, key, opt_state=None) -> Carry:
    # Copies: run_chunk donates its carry, and the caller keeps its own params.
    params = jax.tree.map(jnp.copy, params)
    opt_state = plan.tx.init(params) if opt_state is None else jax.tree.map(jnp.copy, opt_state)
    opt_state = optim.set_learning_rate(opt_state, learning_rate)  # the rate as data
    state = TrainState(params, opt_state, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), key)
    early = plan.early
    best = jnp.float32(np.inf if early is None or early.mode == "min" else -np.inf)
    best_params = jax.tree.map(jnp.copy, params) if early is not None else ()
    wait, stop_step = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
    # Checked here, inside the first compiled call, so a good run pays no extra sync.
    finite = jnp.all(jnp.stack([jnp.isfinite(p).all() for p in jax.tree.leaves(params)]))
    stop = jnp.where(finite, 0, NON_FINITE_PARAMS).astype(jnp.int32)
    return Carry(state, best_params, best, wait, stop, stop_step)


start = jax.jit(_start, static_argnums=0)
start.__doc__ = "The initial carry for ``plan``: fresh optimizer state, step and epoch 0."


def device_data(plan: Plan, x, y, x_val, y_val, *, calls: int) -> dict:
    """The data for ``run_chunk``, moved to the device once. A run of one call gets
    the host arrays, which the call itself transfers (a separate transfer costs about
    as much as that whole call on a small problem)."""
    data = {"x": x, "y": y}
    if plan.n_val:
        data.update(x_val=x_val, y_val=y_val)
    return data if calls == 1 else jax.device_put(data)


def forward_rows(apply_fn, params, x, batch_size: int):
    """``apply_fn`` over the rows of ``x`` in chunks of ``batch_size`` (the last chunk
    repeats the final row to keep its shape), so no activation bigger than a chunk
    is ever materialised. Returns predictions for the ``n`` rows."""
    n = x.shape[0]
    n_chunks = math.ceil(n / batch_size)

    def chunk(i):
        idx = jnp.minimum(i * batch_size + jnp.arange(batch_size), n - 1)
        return apply_fn(params, x[idx])

    out = jax.lax.map(chunk, jnp.arange(n_chunks))
    return out.reshape(n_chunks * batch_size, *out.shape[2:])[:n]


def _select(pred, new, old):
    """``new`` where ``pred`` else ``old``, leaf by leaf (PRNG keys never change here)."""
    pick = lambda a, b: b if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key) else jnp.where(pred, a, b)
    return jax.tree.map(pick, new, old)


def _any(plan: Plan, pred: jax.Array) -> jax.Array:
    """``pred`` for one model; under ``jaxnn.sweep``'s vmap, whether any model's is
    true, so that ``lax.cond`` stays a real branch instead of running both sides."""
    if plan.axis_name is None:
        return pred
    return jax.lax.pmax(pred.astype(jnp.int32), plan.axis_name) > 0


def _all_finite(tree) -> jax.Array:
    # One fused reduction: NaN and inf propagate through a sum.
    return jnp.isfinite(sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree)))


def _mix32(h: jax.Array) -> jax.Array:
    # murmur3's finaliser: every input bit flips about half the output bits.
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def shuffled_order(key: jax.Array, n: int) -> jax.Array:
    """A pseudo-random permutation of ``range(n)`` (int32), by the swap-or-not shuffle
    (Hoang, Morris and Rogaway, CRYPTO 2012).

    Each round pairs ``x`` with ``(K - x) mod n`` and swaps the pair when a keyed hash
    of the larger one says so; every round is a bijection, so the result is a
    permutation, and about 2 log2(n) + 8 rounds mix it well. Unlike a sort-based
    ``jax.random.permutation`` (which peaked at 3x the dataset's bytes for 10M rows
    on the CPU) it works elementwise in place: a few int32 arrays of length n.
    """
    rounds = 2 * max(1, math.ceil(math.log2(max(n, 2)))) + 8
    k_key, h_key = jax.random.split(key)
    ks = jax.random.randint(k_key, (rounds,), 0, n, dtype=jnp.int32)
    seeds = jax.random.bits(h_key, (rounds,), jnp.uint32)

    def round_(x, r):  # int32 throughout: no second n-sized array for a cast
        partner = jnp.where(ks[r] >= x, ks[r] - x, ks[r] - x + n)  # (K - x) mod n, without overflow
        swap = (_mix32(jnp.maximum(x, partner).astype(jnp.uint32) ^ seeds[r]) & 1) == 1
        return jnp.where(swap, partner, x), None

    order, _ = jax.lax.scan(round_, jnp.arange(n, dtype=jnp.int32), jnp.arange(rounds))
    return order


def _epoch_batches(plan: Plan, state: TrainState):
    """Row indices ``(n_batches, batch_size)`` for this epoch, and the padding mask."""
    n, bs, nb = plan.n, plan.batch_size, plan.n_batches
    if plan.shuffle:
        epoch_key = jax.random.fold_in(jax.random.fold_in(state.key, 0), state.epoch)
        order = shuffled_order(epoch_key, n)
    else:
        order = jnp.arange(n, dtype=jnp.int32)
    total = nb * bs
    rows = plan.step_rows or bs
    if total <= n and rows == bs:  # every batch full (drop_remainder drops the tail)
        return order[:total].reshape(nb, bs), None
    order = jnp.concatenate([order, jnp.zeros(max(total - n, 0), jnp.int32)])[:total].reshape(nb, bs)
    mask = (jnp.arange(total) < n).astype(jnp.float32).reshape(nb, bs)
    if rows > bs:  # pad every batch to a multiple of the devices; the pad rows weigh 0
        order = jnp.pad(order, ((0, 0), (0, rows - bs)))
        mask = jnp.pad(mask, ((0, 0), (0, rows - bs)))
    return order, mask


def _train_epoch(plan: Plan, data: dict, carry: Carry):
    """One pass over the data. The hot loop carries only the train state; the NaN
    guard reads the per-step losses afterwards and, only if one is non-finite, replays
    the epoch from its start up to the last finite step (inside ``lax.cond``)."""
    step_fn = make_train_step(plan.apply_fn, plan.loss_fn, plan.tx)
    x, y = data["x"], data["y"]
    idx, mask = _epoch_batches(plan, carry.state)
    batches = (idx,) if mask is None else (idx, mask)

    def step(state, batch):
        i, *m = batch
        if plan.batch_sharding is not None:  # data parallel: each device takes its rows of the batch
            i = jax.lax.with_sharding_constraint(i, plan.batch_sharding)
            m = [jax.lax.with_sharding_constraint(w, plan.batch_sharding) for w in m]
        state, metrics = step_fn(state, (x[i], y[i], *m))  # the row gather happens on the device
        return state, metrics["loss"]

    start = carry.state
    end, losses = jax.lax.scan(step, start, batches, unroll=plan.unroll)
    finite = jnp.isfinite(losses)
    nb = plan.n_batches
    # first_bad: the first step whose loss was non-finite (nb: the last update made
    # the params non-finite), or -1 when the whole epoch was fine.
    first_bad = jnp.where(finite.all(), jnp.where(_all_finite(end.params), -1, nb), jnp.argmin(finite))

    def rewind(k):  # the state after the first k steps of this epoch
        def masked(state, xs):
            j, batch = xs
            new, _ = step(state, batch)
            keep = lambda a, b: jnp.where(j < k, a, b)
            return new._replace(
                params=jax.tree.map(keep, new.params, state.params),
                opt_state=jax.tree.map(keep, new.opt_state, state.opt_state),
                step=keep(new.step, state.step),
            ), None

        return jax.lax.scan(masked, start, (jnp.arange(nb), batches))[0]

    def last_finite():
        s = rewind(first_bad)  # its params gave a non-finite loss but may be finite
        s = jax.lax.cond(
            _any(plan, ~_all_finite(s.params)),
            lambda: _select(_all_finite(s.params), s, rewind(jnp.maximum(first_bad - 1, 0))),
            lambda: s,
        )
        return _select(first_bad >= 0, s, end)  # in a sweep, the other models keep their epoch

    state = jax.lax.cond(_any(plan, first_bad >= 0), last_finite, lambda: end)
    counts = mask.sum(axis=1) if mask is not None else jnp.full(nb, float(plan.batch_size))
    counts = jnp.where((first_bad < 0) | (jnp.arange(nb) < first_bad), counts, 0.0)
    total = counts.sum()
    train_loss = jnp.where(
        total > 0, (jnp.where(counts > 0, losses, 0.0) * counts).sum() / jnp.maximum(total, 1), jnp.nan
    )
    bad = first_bad >= 0
    carry = carry._replace(
        state=state._replace(epoch=state.epoch + 1),
        stop=jnp.where(bad, 2, carry.stop),
        stop_step=jnp.where(bad, start.step + jnp.minimum(first_bad + 1, nb), carry.stop_step),
    )
    return carry, train_loss


def _epoch_values(plan: Plan, data: dict, params, train_loss) -> dict:
    values = {"loss": train_loss}
    if plan.n_val:
        xs, ys, prefix = data["x_val"], data["y_val"], "val_"
    elif plan.metrics:
        xs, ys, prefix = data["x"], data["y"], ""
    else:
        return values
    pred = forward_rows(plan.apply_fn, params, xs, min(plan.eval_batch, xs.shape[0]))
    if plan.n_val:
        values["val_loss"] = plan.loss_fn(pred, ys)
    for name, fn in plan.metrics:
        values[prefix + name] = fn(pred, ys)
    return values


def _early_stop(plan: Plan, carry: Carry, values: dict) -> Carry:
    es = plan.early
    v = values[es.monitor].astype(jnp.float32)
    better = v < carry.best - es.min_delta if es.mode == "min" else v > carry.best + es.min_delta
    improved = jnp.isfinite(v) & better
    params = carry.state.params
    wait = jnp.where(improved, 0, carry.wait + 1)
    stop = jnp.where((carry.stop == 0) & (wait >= es.patience), 1, carry.stop)
    return carry._replace(
        best=jnp.where(improved, v, carry.best),
        wait=wait,
        stop=stop,
        best_params=jax.tree.map(lambda a, b: jnp.where(improved, a, b), params, carry.best_params),
    )


def _record_template(plan: Plan) -> dict:
    names = ["loss"]
    if plan.n_val:
        names.append("val_loss")
    if plan.n_val or plan.metrics:
        names += [("val_" if plan.n_val else "") + n for n, _ in plan.metrics]
    return {n: jnp.float32(jnp.nan) for n in names}


def _one_epoch(plan: Plan, data: dict, carry: Carry):
    carry, train_loss = _train_epoch(plan, data, carry)
    values = _epoch_values(plan, data, carry.state.params, train_loss)
    if plan.early is not None:
        carry = _early_stop(plan, carry, values)
    record = {k: jnp.asarray(values[k], jnp.float32) for k in _record_template(plan)}
    return carry, {**record, "ran": jnp.bool_(True)}


def _skip_epoch(plan: Plan, carry: Carry):
    return carry, {**_record_template(plan), "ran": jnp.bool_(False)}


def _chunk(plan: Plan, carry: Carry, data: dict, target_epochs: jax.Array):
    def body(carry, _):
        active = (carry.state.epoch < target_epochs) & (carry.stop == 0)
        new, rec = jax.lax.cond(
            _any(plan, active), lambda c: _one_epoch(plan, data, c), lambda c: _skip_epoch(plan, c), carry
        )
        if plan.axis_name is None:
            return new, rec
        return _select(active, new, carry), {**rec, "ran": rec["ran"] & active}  # models already done

    carry, records = jax.lax.scan(body, carry, None, length=plan.chunk)
    return carry, records, (carry.state.epoch, carry.stop)


run_chunk = jax.jit(_chunk, static_argnums=0, donate_argnums=1)


class Fresh(NamedTuple):
    """A run not started yet, for a run of one call: ``run`` then builds the carry
    inside that call (one dispatch, no separate start program)."""

    params: Any
    learning_rate: Any
    key: jax.Array
    opt_state: Any = None


def _start_and_chunk(plan: Plan, fresh: Fresh, data: dict, target_epochs: jax.Array):
    return _chunk(plan, _start(plan, *fresh), data, target_epochs)


run_fresh = jax.jit(_start_and_chunk, static_argnums=0)


def run(plan: Plan, carry: Carry, data: dict, epochs: int, progress: bool, saver=None, history: dict | None = None):
    """Calls ``run_chunk`` until ``epochs`` epochs are done or training stops.

    The host reads one small record per chunk (per-epoch losses) and nothing per step.
    ``history`` (from a checkpoint) holds the epochs already run. Returns the final
    carry, the whole history and the stop code.
    """
    records = {k: list(v) for k, v in (history or {}).items() if k != "epoch"}
    epoch, stop = len(records.get("loss", [])), 0
    target = np.int32(epochs)
    bar = _progress_bar(epochs, epoch) if progress else None
    while epoch < epochs and stop == 0:
        before = epoch
        step = run_fresh if isinstance(carry, Fresh) else run_chunk
        carry, rec, status = step(plan, carry, data, target)
        rec, (epoch, stop) = fetch((rec, status))  # the one sync per chunk
        epoch, stop = int(epoch), int(stop)
        for k, v in rec.items():
            if k != "ran":
                records.setdefault(k, []).extend(v[rec["ran"]].tolist())
        if bar is not None:
            bar.update(epoch - before)
            bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in records.items() if k in ("loss", "val_loss")})
        if saver is not None and stop != NON_FINITE_PARAMS:  # nothing worth resuming from
            saver.after_chunk(carry, records, stop != 0)
    if bar is not None:
        bar.close()
    out = {k: np.asarray(v, np.float32) for k, v in records.items()}
    out["epoch"] = np.arange(1, len(out.get("loss", [])) + 1)
    return carry, out, stop


def _progress_bar(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(initial, total), unit="epoch")
