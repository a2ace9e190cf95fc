"""From what a user passes to ``fit`` or ``fit_many`` to a checked, static
:class:`jaxnn._loop.Plan` (private). Every input of ``fit`` and ``fit_many`` is
checked here, before anything is compiled or written, with errors that say what was
wrong and what was expected.
"""

import contextlib
import json
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import _driver, _equinox, _flax, _loop, _stream, checkpoint, logs, optim, parallel, precision, rng
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.data import float_dtype, summary, validate, validate_targets
from jaxnn.losses import LOSSES, get_loss
from jaxnn.metrics import get_metric
from jaxnn.mlp import MLPApply, Model, check_mlp_input
from jaxnn.types import Checkpoints, EarlyStopping, FitResult, TrainState, Tuning


def apply_function(model) -> Callable:
    if isinstance(model, Model):
        return model.apply
    if (linen_apply := _flax.linen_apply(model)) is not None:
        return linen_apply
    if _equinox.is_equinox_module(model):
        raise TypeError("fit, predict and evaluate take an Equinox module directly (not fit_many, make_train_step)")
    if _flax.is_nnx_module(model):
        raise TypeError(
            "fit, predict and evaluate take a flax.nnx Module directly; elsewhere split it first: "
            "graphdef, state = nnx.split(module); apply_fn = lambda p, x: nnx.merge(graphdef, p)(x)"
        )
    if callable(model):
        return model
    raise TypeError(f"model must be a jaxnn Model, a flax Module or an apply_fn(params, x), got {type(model).__name__}")


def resolve_model(model, params):
    """``(apply_fn, params, nnx_module)``: the pure function and params pytree for
    ``model``; an nnx Module also comes back (to write the trained state into)."""
    if (nnx := _flax.split_nnx(model, params)) is not None:
        return *nnx, model
    if (eqx := _equinox.split_equinox(model, params)) is not None:
        return *eqx, None
    if params is None:
        raise TypeError("params is None: pass the model's parameters (e.g. model.init(key))")
    if (linen := _flax.linen_with_variables(model, params)) is not None:
        return linen, params, None
    return apply_function(model), params, None


def split_variables(apply_fn, variables) -> tuple[Any, dict | None]:
    """``(params, model_state)``. A model with a training mode (``train_apply``) takes
    Flax-style variables, ``{"params": ..., **other collections}``: the params train
    and the other collections are its state. Any other model's variables are its params."""
    if hasattr(apply_fn, "train_apply") and isinstance(variables, dict) and "params" in variables:
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}
    return variables, None


def check_host_params(params) -> None:
    """Raises for NaN or inf in params held in host memory. Params on a device are
    checked inside the first compiled call instead: reading them here would cost a
    device sync on every fit."""
    on_host = lambda a: isinstance(a, np.ndarray | np.generic | float)
    if not all(np.isfinite(a).all() for a in jax.tree.leaves(params) if on_host(a)):
        raise _driver.non_finite_params_error(jax.tree.map(lambda a: a if on_host(a) else np.float32(0), params))


def check_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.shape == (2,) and key.dtype == np.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be a PRNG key from jax.random.key(seed), got {key!r}")


def output_shape(apply_fn, params, x: np.ndarray) -> tuple[int, ...]:
    if isinstance(apply_fn, precision.ComputeApply):
        apply_fn = apply_fn.apply_fn  # the same shape in every compute mode
    if isinstance(apply_fn, MLPApply):  # known without tracing: fit's per-call cost matters
        params = apply_fn.split(params)[0]
        check_mlp_input(params, x, len(apply_fn.activations))
        return tuple(params[-1]["w"].shape[1:])
    out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, x.shape[1]), x.dtype))
    return tuple(out.shape[1:])


def prepare_targets(loss_name: str | None, y: np.ndarray, out_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Checks ``y`` against the loss and the model's output; reshapes (n,) to (n, 1)
    for a one-output model (documented, never a broadcast)."""
    if loss_name == "softmax_cross_entropy":
        k = out_shape[-1] if out_shape else 1
        if y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{name}: softmax_cross_entropy needs integer class labels, got dtype {y.dtype}")
            _, low, high = summary(y)
            if low < 0 or high >= k:
                raise ValueError(
                    f"{name}: labels must lie in [0, {k}) for a model with {k} outputs, got values in [{low}, {high}]"
                )
            return y
        if y.shape[1:] != out_shape:
            raise ValueError(f"{name}: one-hot targets must have shape (n, {k}), got {y.shape}")
        y = y.astype(np.float32)
        sums = y.sum(axis=1)
        if y.min() < 0 or y.max() > 1 or np.abs(sums - 1).max() > 1e-3:
            row = int(np.argmax((y < 0).any(axis=1) | (y > 1).any(axis=1) | (np.abs(sums - 1) > 1e-3)))
            raise ValueError(
                f"{name}: softmax_cross_entropy needs one-hot or probability targets (each row in [0, 1], "
                f"summing to 1), or integer labels (n,); row {row} is {y[row].tolist()}"
            )
        return y
    if y.ndim == 1 and out_shape == (1,):
        y = y[:, None]
    if y.shape[1:] != out_shape:
        raise ValueError(
            f"{name} has shape {y.shape} but the model outputs (n, {', '.join(map(str, out_shape))}); "
            f"expected targets of shape (n, {', '.join(map(str, out_shape))})"
        )
    if loss_name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        _, low, high = summary(y)
        if low < 0 or high > 1:
            raise ValueError(f"{name}: {loss_name} needs targets in [0, 1] (0/1 labels), got values in [{low}, {high}]")
    return y.astype(float_dtype())


def loss_name(loss) -> str | None:
    return loss if isinstance(loss, str) else next((k for k, f in LOSSES.items() if f is loss), None)


def plan_run(apply_fn, params, x, y, *, key, loss, tx, batch_size, shuffle, validation, metrics, early_stopping,
             tuning, chunk, placement, axis_name=None, sample_weight=None):  # fmt: skip
    """Checks the data and settings ``fit`` and ``fit_many`` share, and builds the
    static :class:`jaxnn._loop.Plan`. Returns ``(plan, data)``: ``data`` holds the
    host arrays ``x``, ``y``, with validation ``x_val``, ``y_val``, and with sample
    weights ``w`` (and ``w_val``)."""
    if y is None:
        raise TypeError("fit needs targets y (an array with one row per row of x), got None")
    processes = jax.process_count()
    if _stream.is_stream(x):  # read from disk as it trains (jaxnn._stream)
        if axis_name is not None:
            raise TypeError("fit_many takes x in memory; a streamed x (a memmap) trains with fit")
        x = _stream.Source(x)
        _stream.check_plan_inputs(x, validation=validation, metrics=metrics)
        y = validate_targets(y, x.shape, to_device=True)
    else:
        x, y = validate(x, y, to_device=True)
    if processes > 1:
        _check_multiprocess(x, placement, validation)
    w = None if sample_weight is None else check_sample_weight(sample_weight, x.shape[0], "sample_weight")
    x, y, w, x_val, y_val, w_val = _split_validation(key, x, y, w, validation)
    out_shape = output_shape(apply_fn, params, x.sample() if isinstance(x, _stream.Source) else x)
    y = prepare_targets(loss_name(loss), y, out_shape, "y")
    data = {"x": x, "y": y}  # x: a jaxnn._stream.Source when streamed (setup_fit takes it out)
    if x_val is not None:
        data.update(x_val=x_val, y_val=prepare_targets(loss_name(loss), y_val, out_shape, "validation y"))
    data.update({k: v for k, v in (("w", w), ("w_val", w_val)) if v is not None})
    # the global rows: each process holds an equal share in memory, or reads the whole file (streamed)
    n = x.n if isinstance(x, _stream.Source) else x.shape[0] * processes
    batch_size = positive_int(batch_size, "batch_size", n)
    metric_fns = tuple(get_metric(m) for m in metrics)
    if early_stopping is not None:
        early_stopping = _check_early_stopping(early_stopping, x_val is not None, metric_fns)
        if early_stopping.reduce_lr is not None and optim.learning_rate_of(opt_state_shapes(tx, params)) is None:
            raise ValueError(
                "early_stopping.reduce_lr needs the learning rate in the optimizer state: pass an optimizer "
                "name or jaxnn.optim.Optimizer (an optax transformation with a schedule has none to reduce)"
            )
    plan = _loop.Plan(
        apply_fn=apply_fn,
        loss_fn=get_loss(loss),
        tx=tx,
        metrics=metric_fns,
        n=n,
        batch_size=batch_size,
        n_batches=n // batch_size if tuning.drop_remainder else math.ceil(n / batch_size),
        shuffle=bool(shuffle),
        n_val=0 if x_val is None else x_val.shape[0],
        eval_batch=tuning.eval_batch_size,  # tuning is checked (check_tuning)
        chunk=chunk,
        early=early_stopping,
        unroll=tuning.unroll or _default_unroll(params, batch_size),
        step_rows=placement.step_rows(batch_size),
        batch_sharding=placement.batch,
        axis_name=axis_name,
        gather_epoch=tuning.gather == "epoch",
    )
    return plan, data


class Setup(NamedTuple):
    """A checked fit, ready to run."""

    plan: _loop.Plan
    data: dict  # host arrays
    stream: Any  # a jaxnn._stream.Source the run reads x from, or None (x is data["x"])
    start: TrainState  # opt_state None: a fresh optimizer state
    hyperparams: dict  # the optimizer's hyperparameters, written into its state
    checkpoint: Any  # the checkpoint file to resume from, or None
    checkpoints: Checkpoints | None
    saver: checkpoint.Saver | None  # enter it before compiling: it locks and claims the folder
    placement: Any
    nnx_module: Any  # an nnx Module to write the trained params back into, or None
    epochs: int
    progress: bool
    log_dir: Any  # a Path for TensorBoard logs, or None
    run_hparams: dict  # what the logs record as the run's hyperparameters


def setup_fit(
    model,
    params,
    x,
    y,
    *,
    loss,
    key,
    optimizer,
    learning_rate,
    batch_size,
    epochs,
    shuffle,
    validation,
    metrics,
    early_stopping,
    sample_weight,
    checkpoints,
    resume,
    log_dir,
    devices,
    compute_dtype,
    progress,
    tuning,
) -> Setup:
    """Checks every argument of ``fit`` (see there), in one place, before any work."""
    apply_fn, params, nnx_module = resolve_model(model, params)
    check_host_params(params)
    key = check_key(key)
    get_loss(loss)
    epochs = positive_int(epochs, "epochs", MAX_EPOCHS)
    tx, hyperparams = optim.get_optimizer(optimizer, learning_rate)
    checkpoints, tuning = check_checkpoints(checkpoints), check_tuning(tuning)
    log_dir = logs.check_log_dir(log_dir) if jax.process_index() == 0 else None  # one writer
    trainable, model_state = split_variables(apply_fn, params)
    start, path = check_resume(resume, tx, TrainState(trainable, None, 0, 0, key, model_state))
    placement = parallel.for_fit(devices)
    progress = bool(progress) and jax.process_index() == 0  # one progress bar, one writer
    plan, data = plan_run(
        precision.with_compute_dtype(apply_fn, compute_dtype), params, x, y, key=key, loss=loss, tx=tx,
        batch_size=batch_size, shuffle=shuffle, validation=validation, metrics=metrics,
        early_stopping=early_stopping, tuning=tuning, chunk=1, placement=placement, sample_weight=sample_weight,
    )  # fmt: skip
    stream = data.pop("x") if isinstance(data["x"], _stream.Source) else None
    if stream is None and checkpoints is not None and checkpoints.every_steps is not None:
        raise ValueError(
            "checkpoints.every_steps saves within an epoch of a fit that streams x from disk; an in-memory "
            "epoch is one compiled call: use checkpoints.every (epochs)"
        )
    path, saver, done = checkpointing(checkpoints, path, epochs=epochs, plan=plan, loss=loss, optimizer=optimizer,
                                      spec=getattr(model, "spec", None))  # fmt: skip
    done = done if path is not None else int(start.epoch)
    plan = plan._replace(chunk=epochs_per_call(tuning, epochs - done, progress, checkpoints))
    run = {"optimizer": optimizer_name(optimizer), **hyperparams, "batch_size": plan.batch_size, "epochs": epochs,
           "shuffle": plan.shuffle, "compute_dtype": precision.resolve_compute_dtype(compute_dtype)}  # fmt: skip
    return Setup(
        plan, data, stream, start, hyperparams, path, checkpoints, saver, placement, nnx_module, epochs, progress,
        log_dir, run,
    )  # fmt: skip


def optimizer_name(optimizer) -> str:
    if isinstance(optimizer, optax.GradientTransformation):
        return "an optax transformation"
    return getattr(optimizer, "name", optimizer)


@contextlib.contextmanager
def epoch_log(log_dir, plan, hparams: dict, models: int | None = None):
    """The run's :class:`jaxnn.logs.EpochLog` while it trains (``None`` without ``log_dir``)."""
    if log_dir is None:
        yield None
        return
    log = logs.EpochLog(log_dir, hparams, _loop.record_names(plan), models)
    try:
        yield log
    finally:
        log.close()


def checkpointing(checkpoints, resume_path, *, epochs, plan, loss, optimizer, spec):
    """``(file, saver, epoch)``: the checkpoint file a run resumes from (or ``None``),
    the :class:`checkpoint.Saver` of its checkpoints (or ``None``) and the checkpoint's
    epoch (0 without one), checked against this
    call before anything compiles. The rules for a resumed run (``fit``'s docstring):
    its state comes from the checkpoint; ``epochs``, the optimizer's hyperparameters,
    the data and every speed setting from the call; the loss, the optimizer, the
    recorded metrics and early stopping must be the checkpoint's (refused otherwise)."""
    if checkpoints is None and resume_path is None:  # the common call: no work on fit's per-call path
        return None, None, 0
    settings = {
        "loss": loss_name(loss) or "a custom loss",
        "optimizer": optimizer_name(optimizer),
        "records": _loop.record_names(plan),
        "early_stopping": None if plan.early is None else plan.early._asdict(),
    }
    settings = json.loads(json.dumps(settings))  # as a checkpoint stores them
    file, meta = None, {}
    if resume_path is not None:
        file = checkpoint.latest(resume_path)
        meta = checkpoint.read_metadata(file)
        saved = meta.get("settings", {})
        for name, value in settings.items():
            if name in saved and value != saved[name]:
                raise ValueError(
                    f"resume: {file} was trained with {name} {saved[name]!r}, this call has {value!r}; a resumed "
                    f"run keeps its {name} (start a new run to change it)"
                )
        if meta.get("epoch", 0) + (1 if meta.get("step") else 0) > epochs:
            raise ValueError(
                f"resume: {file} is at epoch {meta['epoch']}, past epochs={epochs}; epochs is the epoch to train "
                f"up to, counting the resumed ones: pass epochs >= {meta['epoch']}"
            )
        if checkpoints is not None and checkpoints.run_id not in (None, meta.get("run_id")):
            raise ValueError(f"resume: {file} belongs to run {meta.get('run_id')}, not checkpoints.run_id")
    done = meta.get("epoch", 0)
    if checkpoints is None or jax.process_index() != 0:  # process 0 is the one writer
        return file, None, done
    run_id = meta.get("run_id") or checkpoints.run_id or checkpoint.new_run_id()
    metadata = {"spec": spec, "settings": settings}
    return file, checkpoint.Saver(checkpoints, epochs, metadata, run_id, (done, meta.get("step", 0))), done


def check_resume(resume, tx, fresh: TrainState) -> tuple[TrainState, Any]:
    """``(start, checkpoint_path)``: where a run starts. ``resume`` is ``None`` (the
    ``fresh`` state: the given variables, a new optimizer state, the given key), a
    checkpoint file or folder (restored into the fresh state's structure once
    compiled), or an earlier ``FitResult`` or ``TrainState`` (its params, optimizer
    state, step, epoch, key and model state)."""
    if resume is None:
        return fresh, None
    if isinstance(resume, str | os.PathLike):
        return fresh, resume
    if isinstance(resume, FitResult):
        resume = resume.state
    if not isinstance(resume, TrainState):
        raise TypeError(f"resume must be a checkpoint path, a FitResult or a TrainState, got {type(resume).__name__}")
    shapes = lambda tree: (jax.tree.structure(tree), [jnp.shape(a) for a in jax.tree.leaves(tree)])
    if shapes(resume.variables) != shapes(fresh.variables):
        raise ValueError("resume's params do not have the structure and shapes of params (the model's)")
    check_opt_state(tx, resume.params, resume.opt_state)
    for name in ("step", "epoch"):
        value = np.asarray(getattr(resume, name))
        if value.shape != () or not np.issubdtype(value.dtype, np.integer) or not 0 <= value <= MAX_EPOCHS:
            raise ValueError(f"resume.{name} must be a non-negative int32 scalar, got {getattr(resume, name)!r}")
    return resume._replace(key=check_key(resume.key)), None


def check_checkpoints(ck) -> Checkpoints | None:
    if ck is None:
        return None
    if not isinstance(ck, Checkpoints):
        raise TypeError(f"checkpoints must be a jaxnn.Checkpoints(dir, every, keep, metadata), got {ck!r}")
    if not isinstance(ck.dir, str | os.PathLike):
        raise TypeError(f"checkpoints.dir must be a folder path, got {ck.dir!r}")
    if ck.every is not None:
        positive_int(ck.every, "checkpoints.every")
    if ck.every_steps is not None:
        positive_int(ck.every_steps, "checkpoints.every_steps")
    positive_int(ck.keep, "checkpoints.keep")
    if not isinstance(ck.overwrite, bool):
        raise TypeError(f"checkpoints.overwrite must be True or False, got {ck.overwrite!r}")
    if ck.run_id is not None and not (isinstance(ck.run_id, str) and ck.run_id.isalnum()):
        raise ValueError(f"checkpoints.run_id must be letters and digits, got {ck.run_id!r}")
    if ck.metadata is not None:
        if not isinstance(ck.metadata, dict):
            raise TypeError(f"checkpoints.metadata must be a dict, got {type(ck.metadata).__name__}")
        try:
            json.dumps(ck.metadata, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"checkpoints.metadata must be JSON-serialisable: {e}") from None
    return ck


def check_tuning(tuning) -> Tuning:
    if tuning is None:
        return Tuning()
    if not isinstance(tuning, Tuning):
        raise TypeError(f"tuning must be a jaxnn.Tuning(...), got {tuning!r}")
    if tuning.epochs_per_call is not None:
        positive_int(tuning.epochs_per_call, "tuning.epochs_per_call")
    if tuning.unroll is not None:
        positive_int(tuning.unroll, "tuning.unroll")
    positive_int(tuning.eval_batch_size, "tuning.eval_batch_size")
    if not isinstance(tuning.drop_remainder, bool):
        raise TypeError(f"tuning.drop_remainder must be a bool, got {tuning.drop_remainder!r}")
    if tuning.gather not in ("step", "epoch"):
        raise ValueError(f"tuning.gather must be 'step' or 'epoch', got {tuning.gather!r}")
    return tuning


def check_opt_state(tx, params, opt_state) -> None:
    """Raises unless ``opt_state`` has the structure, shapes and dtypes ``tx.init(params)`` would."""
    want = opt_state_shapes(tx, params)
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), opt_state)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
        raise ValueError(
            "opt_state does not match this optimizer and these params: expected the state "
            f"optimizer.init(params) gives, {want}; got {got}. Pass the state of an earlier fit with the "
            "same optimizer and model (FitResult.state.opt_state)"
        )


_OPT_STATE_SHAPES: dict = {}  # (tx, params' structure and leaf types) -> tx.init's output shapes


def opt_state_shapes(tx, params):
    """``jax.eval_shape(tx.init, params)``, remembered for the last 64 optimizers and
    params structures: tracing ``tx.init`` costs about 0.3 ms, on every
    ``fit(resume=...)`` and ``partial_fit`` call."""
    leaves, tree = jax.tree.flatten(params)
    kind = lambda a: (type(a), np.shape(a), getattr(a, "dtype", None), getattr(a, "weak_type", None))
    key = (tx, tree, tuple(map(kind, leaves)))
    try:
        hit = _OPT_STATE_SHAPES.get(key)
    except TypeError:  # a transformation that cannot be hashed
        return jax.eval_shape(tx.init, params)
    if hit is None:
        if len(_OPT_STATE_SHAPES) >= 64:
            _OPT_STATE_SHAPES.pop(next(iter(_OPT_STATE_SHAPES)))
        hit = _OPT_STATE_SHAPES[key] = jax.eval_shape(tx.init, params)
    return hit


def _check_multiprocess(x, placement, validation) -> None:
    from jax.experimental import multihost_utils

    if placement.batch is None:
        raise ValueError("a multi-process run trains on every process's devices: leave devices=None")
    if validation is not None and not isinstance(validation, tuple | list):
        raise ValueError(
            "in a multi-process run pass validation=(x_val, y_val) (whole, to every process), not a fraction"
        )
    rows = multihost_utils.process_allgather(np.array([x.shape[0]]))
    if len(set(np.ravel(rows).tolist())) != 1:
        raise ValueError(f"every process must feed the same number of rows, got {np.ravel(rows).tolist()}")


def check_sample_weight(weights, n: int, name: str) -> np.ndarray:
    """``weights`` as float32 ``(n,)``: finite, >= 0, not all 0."""
    w = np.asarray(weights)
    if w.dtype == bool or not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise TypeError(f"{name} must be numbers, one per row, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per row), got {w.shape}")
    w = w.astype(np.float32)
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"{name} must be finite and >= 0, and not all 0")
    return w


def _split_validation(key, x, y, w, validation):
    """``validation`` is ``None``, ``(x_val, y_val)``, ``(x_val, y_val, w_val)``, or
    the fraction of ``(x, y)`` (and the weights ``w``) to hold out at random (stream
    ``"validation"`` of the run key). Returns ``x, y, w, x_val, y_val, w_val``."""
    if validation is None:
        return x, y, w, None, None, None
    if isinstance(validation, tuple | list):
        if len(validation) not in (2, 3):
            raise TypeError(
                "validation must be a pair (x_val, y_val), a triple (x_val, y_val, weights) or a fraction in (0, 1)"
            )
        x_val, y_val = validate(*validation[:2], x_name="validation x", y_name="validation y")
        if x_val.shape[1] != x.shape[1]:
            raise ValueError(f"validation x has {x_val.shape[1]} features, x has {x.shape[1]}")
        w_val = None
        if len(validation) == 3:
            w_val = check_sample_weight(validation[2], x_val.shape[0], "validation weights")
        return x, y, w, x_val, y_val, w_val
    if isinstance(validation, bool) or not isinstance(validation, float | int | np.floating):
        raise TypeError(f"validation must be a pair (x_val, y_val) or a fraction in (0, 1), got {validation!r}")
    if not 0 < validation < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
    n_val = int(round(x.shape[0] * validation))
    if not 0 < n_val < x.shape[0]:
        raise ValueError(f"validation={validation} of {x.shape[0]} rows leaves an empty split")
    perm = np.asarray(jax.random.permutation(rng.stream(key, "validation"), x.shape[0]))
    val, train = perm[:n_val], perm[n_val:]
    if w is None:
        return x[train], y[train], None, x[val], y[val], None
    return x[train], y[train], w[train], x[val], y[val], w[val]


def _check_early_stopping(es: EarlyStopping, has_val: bool, metric_fns) -> EarlyStopping:
    if not isinstance(es, EarlyStopping):
        raise TypeError(f"early_stopping must be a jaxnn.EarlyStopping, got {es!r}")
    prefix = "val_" if has_val else ""
    names = ["loss"] + (["val_loss"] if has_val else []) + [prefix + n for n, _ in metric_fns]
    if es.monitor not in names:
        raise ValueError(f"early_stopping.monitor={es.monitor!r} is not recorded; expected one of {names}")
    positive_int(es.patience, "early_stopping.patience")
    if not es.min_delta >= 0:
        raise ValueError(f"early_stopping.min_delta must be >= 0, got {es.min_delta}")
    if es.best not in ("significant", "any"):
        raise ValueError(f"early_stopping.best must be 'significant' or 'any', got {es.best!r}")
    if es.reduce_lr is not None and not (isinstance(es.reduce_lr, float | int) and 0 < es.reduce_lr < 1):
        raise ValueError(f"early_stopping.reduce_lr must be None or a factor in (0, 1), got {es.reduce_lr!r}")
    if not (isinstance(es.min_lr, float | int) and es.min_lr >= 0):
        raise ValueError(f"early_stopping.min_lr must be a number >= 0, got {es.min_lr!r}")
    mode = es.mode
    if mode == "auto":
        mode = "max" if es.monitor.removeprefix("val_") in ("accuracy", "r2") else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"early_stopping.mode must be 'min', 'max' or 'auto', got {es.mode!r}")
    return es._replace(mode=mode)


MAX_EPOCHS_PER_CALL = 1024  # the compiled chunk's length: the host syncs at least this often


def epochs_per_call(tuning: Tuning, remaining: int, progress: bool, checkpoints: Checkpoints | None) -> int:
    """Epochs per compiled call: the tuning's, else a tenth of the ``remaining`` epochs
    (those this call trains) with a progress bar and all of them without, rounded up to
    a power of two and at most ``MAX_EPOCHS_PER_CALL``; a divisor of the checkpoint
    interval. The chunk's length is static (a compiled program per length), so it
    follows the epochs left, not the epoch count: training on one epoch at a time
    (``fit(..., epochs=e, resume=previous)``) reuses one program, other counts share a
    few, and a huge ``epochs`` bound that early stopping cuts short costs a chunk, not
    a scan as long as the bound. Epochs past the target are skipped inside the chunk
    (``lax.cond``), so the chunk's length never changes a result."""
    value = tuning.epochs_per_call
    if value is None:
        want = max(1, math.ceil(remaining / 10)) if progress else max(1, remaining)
        value = min(1 << (want - 1).bit_length(), MAX_EPOCHS_PER_CALL)
    if checkpoints is not None and checkpoints.every is not None:
        value = math.gcd(value, checkpoints.every)
    return value


def _default_unroll(params, batch_size: int) -> int:
    # A step of a small network costs less than the loop's own bookkeeping (more so on
    # an accelerator, where each loop iteration is a round of kernel launches);
    # unrolling a few steps per iteration amortises it. On an H200, work B (a
    # 784-512-512-10 step at batch 128, 86M weight-rows) ran 13% faster unrolled 8 times.
    # On a CPU, 2 runs as fast as 4 on the seed network and compiles 0.4 s faster.
    work = batch_size * sum(getattr(p, "size", 1) for p in jax.tree.leaves(params))
    if jax.default_backend() == "cpu":
        return 2 if work <= 4096 else 1
    return 8 if work <= 2**27 else 1
