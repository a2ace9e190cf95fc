"""From what a user passes to ``fit`` or ``fit_many`` to a checked, static
:class:`jaxnn._loop.Plan` (private). Every input is checked here, before anything is
compiled, with errors that say what was wrong and what was expected.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _flax, _loop
from jaxnn._checks import positive_int as _positive_int
from jaxnn.data import validate
from jaxnn.losses import LOSSES, get_loss
from jaxnn.metrics import get_metric
from jaxnn.mlp import MLPApply, Model, check_mlp_input


class EarlyStopping(NamedTuple):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is ``"loss"``, ``"val_loss"`` or a metric's history name (e.g.
    ``"val_accuracy"``); ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for
    accuracy and r2, min otherwise). ``restore_best`` returns the best epoch's params.
    The decision is made inside the compiled loop, so fusing epochs never overshoots.
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True


MAX_EPOCHS = 2**31 - 1  # the loop counts epochs and steps in int32


def _apply_fn(model) -> Callable:
    if isinstance(model, Model):
        return model.apply
    if (linen_apply := _flax.linen_apply(model)) is not None:
        return linen_apply
    if _flax.is_nnx_module(model):
        raise TypeError(
            "fit, predict and evaluate take a flax.nnx Module directly; elsewhere split it first: "
            "graphdef, state = nnx.split(module); apply_fn = lambda p, x: nnx.merge(graphdef, p)(x)"
        )
    if callable(model):
        return model
    raise TypeError(f"model must be a jaxnn Model, a flax Module or an apply_fn(params, x), got {type(model).__name__}")


def _resolve(model, params):
    """``(apply_fn, params, nnx_module)``: the pure function and params pytree for
    ``model``; an nnx Module also comes back (to write the trained state into)."""
    if (nnx := _flax.split_nnx(model, params)) is not None:
        return *nnx, model
    if params is None:
        raise TypeError("params is None: pass the model's parameters (e.g. model.init(key))")
    if _flax.linen_apply(model) is not None:
        _flax.check_linen_variables(params)
    return _apply_fn(model), params, None


def _check_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.shape == (2,) and key.dtype == np.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be a PRNG key from jax.random.key(seed), got {key!r}")


def _output_shape(apply_fn, params, x: np.ndarray) -> tuple[int, ...]:
    if isinstance(apply_fn, MLPApply):  # known without tracing: fit's per-call cost matters
        check_mlp_input(params, x, len(apply_fn.activations))
        return tuple(params[-1]["w"].shape[1:])
    out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, x.shape[1]), x.dtype))
    return tuple(out.shape[1:])


def _prepare_targets(loss_name: str | None, y: np.ndarray, out_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Checks ``y`` against the loss and the model's output; reshapes (n,) to (n, 1)
    for a one-output model (documented, never a broadcast)."""
    if loss_name == "softmax_cross_entropy":
        k = out_shape[-1] if out_shape else 1
        if y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{name}: softmax_cross_entropy needs integer class labels, got dtype {y.dtype}")
            if y.min() < 0 or y.max() >= k:
                raise ValueError(
                    f"{name}: labels must lie in [0, {k}) for a model with {k} outputs, "
                    f"got values in [{y.min()}, {y.max()}]"
                )
            return y
        if y.shape[1:] != out_shape:
            raise ValueError(f"{name}: one-hot targets must have shape (n, {k}), got {y.shape}")
        return y.astype(np.float32)
    if y.ndim == 1 and out_shape == (1,):
        y = y[:, None]
    if y.shape[1:] != out_shape:
        raise ValueError(
            f"{name} has shape {y.shape} but the model outputs (n, {', '.join(map(str, out_shape))}); "
            f"expected targets of shape (n, {', '.join(map(str, out_shape))})"
        )
    if loss_name in ("binary_cross_entropy", "binary_cross_entropy_with_logits") and (y.min() < 0 or y.max() > 1):
        raise ValueError(
            f"{name}: {loss_name} needs targets in [0, 1] (0/1 labels), got values in [{y.min()}, {y.max()}]"
        )
    return y.astype(jnp.result_type(float))


def _loss_name(loss) -> str | None:
    return loss if isinstance(loss, str) else next((k for k, f in LOSSES.items() if f is loss), None)


def prepare(
    apply_fn,
    params,
    x,
    y,
    *,
    key,
    loss,
    tx,
    batch_size,
    shuffle,
    drop_remainder,
    validation_data,
    validation_split,
    metrics,
    early_stopping,
    unroll,
    eval_batch_size,
    chunk,
    dp=None,
    axis_name=None,
):
    """Checks the data and settings ``fit`` and ``fit_many`` share, and builds the
    static :class:`jaxnn._loop.Plan`. Returns ``(plan, x, y, x_val, y_val)``."""
    if y is None:
        raise TypeError("fit needs targets y (an array with one row per row of x), got None")
    x, y = validate(x, y)
    processes = jax.process_count()
    if processes > 1:
        _check_multiprocess(x, dp, validation_split)
    x, y, x_val, y_val = _split_validation(key, x, y, validation_data, validation_split)
    out_shape = _output_shape(apply_fn, params, x)
    y = _prepare_targets(_loss_name(loss), y, out_shape, "y")
    if x_val is not None:
        y_val = _prepare_targets(_loss_name(loss), y_val, out_shape, "validation y")
    n = x.shape[0] * processes  # the global rows (each process holds an equal share)
    batch_size = _positive_int(batch_size, "batch_size", n)
    metric_fns = tuple(get_metric(m) for m in metrics)
    if early_stopping is not None:
        early_stopping = _check_early_stopping(early_stopping, x_val is not None, metric_fns)
    plan = _loop.Plan(
        apply_fn=apply_fn,
        loss_fn=get_loss(loss),
        tx=tx,
        metrics=metric_fns,
        n=n,
        batch_size=batch_size,
        n_batches=n // batch_size if drop_remainder else math.ceil(n / batch_size),
        shuffle=bool(shuffle),
        n_val=0 if x_val is None else x_val.shape[0],
        eval_batch=_positive_int(eval_batch_size, "eval_batch_size"),
        chunk=chunk,
        early=early_stopping,
        unroll=_positive_int(unroll, "unroll") if unroll is not None else _default_unroll(params, batch_size),
        step_rows=dp.step_rows(batch_size) if dp else 0,
        batch_sharding=dp.batch if dp else None,
        axis_name=axis_name,
    )
    return plan, x, y, x_val, y_val


def check_opt_state(tx, params, opt_state) -> None:
    """Raises unless ``opt_state`` has the structure, shapes and dtypes ``tx.init(params)`` would."""
    want = jax.eval_shape(tx.init, params)
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), opt_state)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
        raise ValueError(
            "opt_state does not match this optimizer and these params: expected the state "
            f"optimizer.init(params) gives, {want}; got {got}. Pass the state of an earlier fit with the "
            "same optimizer and model (FitResult.state.opt_state)"
        )


def _check_multiprocess(x, dp, validation_split) -> None:
    from jax.experimental import multihost_utils

    if dp is None:
        raise ValueError("a multi-process run trains on every process's devices: leave devices=None")
    if validation_split:
        raise ValueError("in a multi-process run pass validation_data (whole, to every process), not validation_split")
    rows = multihost_utils.process_allgather(np.array([x.shape[0]]))
    if len(set(np.ravel(rows).tolist())) != 1:
        raise ValueError(f"every process must feed the same number of rows, got {np.ravel(rows).tolist()}")


def _split_validation(key, x, y, validation_data, validation_split):
    if validation_data is not None:
        if validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = validate(*validation_data, x_name="validation x", y_name="validation y")
        if x_val.shape[1] != x.shape[1]:
            raise ValueError(f"validation x has {x_val.shape[1]} features, x has {x.shape[1]}")
        return x, y, x_val, y_val
    if not validation_split:
        return x, y, None, None
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    n_val = int(round(x.shape[0] * validation_split))
    if not 0 < n_val < x.shape[0]:
        raise ValueError(f"validation_split={validation_split} of {x.shape[0]} rows leaves an empty split")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), x.shape[0]))
    val, train = perm[:n_val], perm[n_val:]
    return x[train], y[train], x[val], y[val]


def _check_early_stopping(es: EarlyStopping, has_val: bool, metric_fns) -> EarlyStopping:
    if not isinstance(es, EarlyStopping):
        raise TypeError("early_stopping must be a jaxnn.EarlyStopping")
    prefix = "val_" if has_val else ""
    names = ["loss"] + (["val_loss"] if has_val else []) + [prefix + n for n, _ in metric_fns]
    if es.monitor not in names:
        raise ValueError(f"early_stopping.monitor={es.monitor!r} is not recorded; expected one of {names}")
    _positive_int(es.patience, "early_stopping.patience")
    if not es.min_delta >= 0:
        raise ValueError(f"early_stopping.min_delta must be >= 0, got {es.min_delta}")
    mode = es.mode
    if mode == "auto":
        mode = "max" if es.monitor.removeprefix("val_") in ("accuracy", "r2") else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"early_stopping.mode must be 'min', 'max' or 'auto', got {es.mode!r}")
    return es._replace(mode=mode)


def _epochs_per_call(value, epochs: int, progress: bool, checkpoint_every) -> int:
    if value is None:
        value = max(1, math.ceil(epochs / 10)) if progress else epochs
    value = _positive_int(value, "epochs_per_call")
    if checkpoint_every is not None:
        value = math.gcd(value, _positive_int(checkpoint_every, "checkpoint_every"))
    return value


def _default_unroll(params, batch_size: int) -> int:
    # A step of a tiny network costs less than the loop's own bookkeeping (more so on
    # an accelerator, where each loop iteration is a round of kernel launches);
    # unrolling a few steps per iteration amortises it. Large steps gain nothing.
    work = batch_size * sum(getattr(p, "size", 1) for p in jax.tree.leaves(params))
    if jax.default_backend() == "cpu":
        return 4 if work <= 4096 else 1
    return 8 if work <= 2**20 else 1
