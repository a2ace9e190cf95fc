"""An epoch's end inside the compiled loop (private): validation loss and metrics,
early stopping (which may lower the learning rate on a plateau), and the epoch's
record; and a model's forward pass over many rows in fixed-size chunks. Shared by
the in-memory loop (``jaxnn._loop``) and the streamed one (``jaxnn._stream``).
"""

import math

import jax
import jax.numpy as jnp

from jaxnn import _optim
from jaxnn.options import Stop


def forward_rows(apply_fn, params, x, batch_size: int):
    """``apply_fn`` over the rows of ``x`` in chunks of ``batch_size`` (the last chunk
    repeats the final row to keep its shape), so no activation bigger than a chunk
    is ever materialised. Returns predictions for the ``n`` rows."""
    n = x.shape[0]
    n_chunks = math.ceil(n / batch_size)
    if n_chunks == 1:
        return apply_fn(params, x)

    def chunk(i):
        idx = jnp.minimum(i * batch_size + jnp.arange(batch_size), n - 1)
        return apply_fn(params, x[idx])

    out = jax.lax.map(chunk, jnp.arange(n_chunks))
    return out.reshape(n_chunks * batch_size, *out.shape[2:])[:n]


def _epoch_values(plan, data, params, train_loss) -> dict:
    values = {"loss": train_loss}
    if plan.n_val:
        xs, ys, ws, prefix = data.x_val, data.y_val, data.w_val, "val_"
    elif plan.metrics:
        xs, ys, ws, prefix = data.x, data.y, data.w, ""
    else:
        return values
    pred = forward_rows(plan.apply_fn, params, xs, min(plan.eval_batch, xs.shape[0]))
    weights = () if ws is None else (ws,)
    if plan.n_val:
        values["val_loss"] = plan.loss_fn(pred, ys, *weights)
    for name, fn in plan.metrics:
        values[prefix + name] = fn(pred, ys, *weights)
    return values


def _early_stop(plan, carry, values: dict):
    es = plan.early
    v = values[es.monitor].astype(jnp.float32)
    sign = 1.0 if es.mode == "min" else -1.0  # compare as a loss: lower is better
    improved = jnp.isfinite(v) & (sign * v < sign * carry.best - es.min_delta)
    moves = (
        improved if es.best == "significant" else jnp.isfinite(v) & (sign * v < sign * carry.best)
    )
    wait = jnp.where(improved, 0, carry.wait + 1)
    out_of_patience = wait >= es.patience
    state = carry.state
    # a plateau lowers the learning rate until it reaches min_lr, then stops
    if es.reduce_lr is not None:
        reduce = out_of_patience & (_optim.learning_rate_of(state.opt_state) > es.min_lr)
        factor = jnp.where(reduce, jnp.float32(es.reduce_lr), jnp.float32(1.0))
        state = state._replace(opt_state=_optim.scale_learning_rate(state.opt_state, factor))
        wait, out_of_patience = jnp.where(reduce, 0, wait), out_of_patience & ~reduce
    stop = jnp.where(
        (carry.stop == Stop.COMPLETED) & out_of_patience, Stop.EARLY_STOPPING, carry.stop
    )
    return carry._replace(
        state=state,
        best=jnp.where(moves, v, carry.best),
        wait=wait,
        stop=stop,
        best_params=jax.tree.map(
            lambda a, b: jnp.where(moves, a, b), carry.state.variables, carry.best_params
        ),
    )


def record_names(plan) -> list[str]:
    """The history's names, in order: loss, val_loss, then the metrics."""
    names = ["loss"]
    if plan.n_val:
        names.append("val_loss")
    if plan.n_val or plan.metrics:
        names += [("val_" if plan.n_val else "") + n for n, _ in plan.metrics]
    return names


def record_template(plan) -> dict:
    return {n: jnp.float32(jnp.nan) for n in record_names(plan)}


def epoch_end(plan, data, carry, train_loss: jax.Array):
    """After an epoch's updates: its validation values and metrics, early stopping,
    and its record."""
    values = _epoch_values(plan, data, carry.state.variables, train_loss)
    if plan.early is not None:
        carry = _early_stop(plan, carry, values)
    record = {k: jnp.asarray(values[k], jnp.float32) for k in record_template(plan)}
    return carry, {**record, "ran": jnp.bool_(True)}
