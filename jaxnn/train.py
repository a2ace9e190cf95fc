"""Training: a step is a pure function from state to state; a run is that step
scanned over batches and epochs in one compiled call.

``make_train_step`` is the seed's training loop body (forward pass, loss, ``jax.grad``,
optax update) for people who write their own loop. ``fit`` compiles whole chunks of
epochs (shuffle, fixed-shape padded batches, validation, early stopping and a NaN
guard all inside XLA) and only talks to the host between chunks. ``predict`` and
``evaluate`` run a model over data in fixed-size chunks. The compiled loop itself is
in ``jaxnn._loop``; optimizer look-up in ``jaxnn.optim``.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import _flax, _loop, checkpoint, optim, parallel, precision
from jaxnn._plan import (
    MAX_EPOCHS,
    EarlyStopping,
    _apply_fn,
    _check_key,
    _epochs_per_call,
    _loss_name,
    _output_shape,
    _positive_int,
    _prepare_targets,
    _resolve,
    check_opt_state,
    prepare,
)
from jaxnn.data import validate
from jaxnn.distributed import fetch
from jaxnn.losses import Loss, get_loss
from jaxnn.metrics import get_metric
from jaxnn.mlp import Model, Params

TrainState = _loop.TrainState


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params: the trained parameters (the best epoch's with ``restore_best``).
      state: the final :class:`TrainState` (for resuming or inspecting).
      history: per-epoch numpy arrays: ``loss`` (mean training loss), ``val_loss``
        when there is validation data, one entry per metric (``val_<name>`` on
        validation data, ``<name>`` on training data otherwise), and ``epoch``.
      epochs_run: how many epochs ran (fewer than asked after a stop).
      stop_reason: ``None``, ``"early_stopping"`` or ``"non_finite_loss"``.
      message: a sentence about the stop, or ``""``.
    """

    params: Params
    state: TrainState
    history: dict[str, np.ndarray]
    epochs_run: int
    stop_reason: str | None = None
    message: str = ""


def init_state(params: Params, optimizer: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh :class:`TrainState` for ``params`` (step 0, epoch 0)."""
    return TrainState(
        params, optimizer.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), _check_key(key)
    )


def make_train_step(apply_fn: Callable, loss: str | Loss, optimizer: optax.GradientTransformation):
    """Builds ``train_step(state, batch) -> (state, metrics)``: one SGD-style update.

    ``batch`` is ``(x, y)`` or ``(x, y, weights)``. The step is pure: jit it, scan it,
    vmap it. ``metrics`` is ``{"loss": scalar}``, the loss before the update.

    Example:
      >>> import jaxnn
      >>> model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
      >>> tx = optax.sgd(0.1)
      >>> state = init_state(model.init(jax.random.key(0)), tx, jax.random.key(1))
      >>> step = jax.jit(make_train_step(model.apply, "mse", tx))
      >>> state, m = step(state, (jnp.ones((100, 3)), jnp.full((100, 1), 0.5)))
      >>> int(state.step)
      1
    """
    return _loop.make_train_step(_apply_fn(apply_fn), get_loss(loss), optimizer)


def fit(
    model: Model | Callable,
    params: Params,
    x,
    y,
    *,
    loss: str | Loss,
    key: jax.Array,
    optimizer: str | optax.GradientTransformation = "sgd",
    learning_rate: float | optax.Schedule | None = None,
    batch_size: int = 32,
    epochs: int = 1,
    shuffle: bool = True,
    drop_remainder: bool = False,
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    progress: bool = True,
    epochs_per_call: int | None = None,
    unroll: int | None = None,
    eval_batch_size: int = 1024,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume_from=None,
    checkpoint_metadata: dict | None = None,
    devices=None,
    compute_dtype: str | None = "auto",
    opt_state=None,
) -> FitResult:
    """Trains ``model`` on ``(x, y)``: shuffled mini-batches, one compiled call per
    chunk of epochs.

    Args:
      model: a :class:`jaxnn.Model`, any ``apply_fn(params, x) -> predictions``, a
        ``flax.linen`` Module (``params`` its variables from ``module.init``), or a
        ``flax.nnx`` Module (``params=None`` trains its ``nnx.Param`` state, which
        is written back into the module at the end; ``FitResult.params`` holds it).
      params: initial parameters (not modified).
      x: inputs, shape ``(n, features)``.
      y: targets: ``(n, outputs)`` (``(n,)`` is taken as ``(n, 1)`` for a
        one-output model), or integer labels ``(n,)`` for softmax_cross_entropy.
      loss: a loss name from ``jaxnn.losses.LOSSES`` or a callable
        ``loss(predictions, targets, weights)``.
      key: the run's PRNG key. Streams: ``fold_in(key, 0)`` shuffles (epoch ``e``
        uses ``fold_in(that, e)``), ``fold_in(key, 2)`` draws ``validation_split``.
      optimizer: ``"sgd"`` (the seed's), ``"momentum"``, ``"adam"``, ``"adamw"``, or
        any ``optax.GradientTransformation``.
      learning_rate: with a name: a float > 0 or an optax schedule; default 0.01.
      batch_size: rows per update, in ``[1, n]``; 1 updates after every row. The
        last partial batch is padded and masked (no row dropped, no new shape)
        unless ``drop_remainder``.
      epochs: passes over the data.
      shuffle: reshuffle rows every epoch, on the device.
      validation_data: ``(x_val, y_val)``, evaluated after every epoch.
      validation_split: instead, hold out this fraction of ``(x, y)`` at random.
      metrics: names (``"accuracy"``, ``"rmse"``, ``"mae"``, ``"r2"``) or callables,
        computed on validation data after every epoch (on training data if none).
      early_stopping: an :class:`EarlyStopping`, or ``None``.
      progress: show a progress bar (updated between compiled chunks).
      epochs_per_call: epochs per compiled call; default about a tenth of
        ``epochs`` with a progress bar, all of them without.
      unroll: batches per loop iteration in the compiled scan (a speed knob for tiny
        networks); default picked from the model's size.
      eval_batch_size: rows per chunk when evaluating validation data and metrics.
      checkpoint_dir, checkpoint_every, keep_checkpoints: save a checkpoint every
        ``checkpoint_every`` epochs into ``checkpoint_dir``, keeping the newest
        ``keep_checkpoints``.
      resume_from: a checkpoint file or folder to continue from (its params,
        optimizer state, epoch and key replace ``params`` and ``key``).
      checkpoint_metadata: JSON-able extras stored in each checkpoint (e.g. the run
        config); the model's ``spec`` is stored too.
      devices: ``None`` (every device), a count, or a list of devices. With more than
        one, every batch is split over them (data parallel; params replicated); a
        batch that does not divide evenly is padded and masked, with a warning.
      compute_dtype: ``"auto"`` (bfloat16 on TPU, float32 elsewhere), ``"float32"``
        or ``"bfloat16"``: the forward and backward pass run in it while params,
        optimizer state and loss stay float32 (see ``jaxnn.precision``).
      opt_state: continue from this optimizer state (``FitResult.state.opt_state``
        of an earlier fit with the same optimizer and model) instead of a fresh one,
        e.g. to train on new data without resetting Adam's moments.

    Returns:
      A :class:`FitResult`.

    Raises:
      TypeError, ValueError: bad data, shapes, labels or settings, before compiling.
    """
    apply_fn, params, nnx_module = _resolve(model, params)
    key = _check_key(key)
    get_loss(loss)
    epochs = _positive_int(epochs, "epochs", MAX_EPOCHS)
    tx, lr = optim.get_optimizer(optimizer, learning_rate)
    if opt_state is not None:
        if resume_from is not None:
            raise ValueError("give opt_state or resume_from, not both (a checkpoint holds its own optimizer state)")
        check_opt_state(tx, params, opt_state)
    dp = parallel.DataParallel(devs) if len(devs := parallel.resolve_devices(devices)) > 1 else None
    compute_fn = precision.with_compute_dtype(apply_fn, compute_dtype)
    progress = progress and jax.process_index() == 0  # one progress bar, one writer
    plan, x, y, x_val, y_val = prepare(
        compute_fn,
        params,
        x,
        y,
        key=key,
        loss=loss,
        tx=tx,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_remainder=drop_remainder,
        validation_data=validation_data,
        validation_split=validation_split,
        metrics=metrics,
        early_stopping=early_stopping,
        unroll=unroll,
        eval_batch_size=eval_batch_size,
        chunk=_epochs_per_call(epochs_per_call, epochs, progress, checkpoint_every),
        dp=dp,
    )
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError("checkpoint_every needs a checkpoint_dir to write to")
    saver = None
    if checkpoint_dir is not None and jax.process_index() == 0:
        saver = checkpoint.Saver(
            checkpoint_dir,
            checkpoint_every or epochs,
            keep_checkpoints,
            getattr(model, "spec", None),
            epochs,
            checkpoint_metadata,
        )
    history = None
    fresh = plan.chunk >= epochs and saver is None and resume_from is None and dp is None
    if fresh:  # one call does it all: build the carry inside it
        carry = _loop.Fresh(params, lr, key, opt_state)
    else:
        carry = _loop.start(plan, params, lr, key, opt_state)
        if resume_from is not None:
            carry, history = checkpoint.restore_carry(resume_from, carry)
    # host arrays when one call (or the mesh placement) moves them; else once, now
    calls = 1 if fresh or dp is not None else 2
    data = _loop.device_data(plan, x, y, x_val, y_val, calls=calls)
    if dp is not None:
        carry = dp.put(carry)
        data = {
            **dp.put_rows({"x": data["x"], "y": data["y"]}),
            **dp.put({k: v for k, v in data.items() if k not in ("x", "y")}),
        }
    carry, history, stop_code = _loop.run(plan, carry, data, epochs, progress, saver, history)
    result = _finish(plan, carry, history, stop_code, learning_rate)
    if nnx_module is not None:
        _flax.update_nnx(nnx_module, result.params)
    return result


def _finish(plan, carry, history, stop_code: int, learning_rate) -> FitResult:
    if stop_code == _loop.NON_FINITE_PARAMS:
        raise _loop.non_finite_params_error(carry.state.params)
    reason = {0: None, 1: "early_stopping", 2: "non_finite_loss"}[stop_code]
    message = ""
    params = carry.state.params
    if stop_code == 1:
        message = (
            f"early stopping: {plan.early.monitor} did not improve by more than "
            f"{plan.early.min_delta} for {plan.early.patience} epochs"
        )
    if stop_code == 2:
        step = int(carry.stop_step)
        epoch = step // plan.n_batches + 1
        lr = f" ({learning_rate})" if learning_rate is not None else ""
        message = (
            f"the loss became non-finite (NaN or inf) at epoch {epoch}, step {step}; "
            f"training stopped and kept the parameters from the last finite step. "
            f"The usual cause is a learning rate{lr} that is too large: try a smaller one."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    if plan.early is not None and plan.early.restore_best and np.isfinite(fetch(carry.best)):
        params = carry.best_params
    return FitResult(params, carry.state, history, len(history["epoch"]), reason, message)


_predict_chunks = jax.jit(_loop.forward_rows, static_argnums=(0, 3))


def predict(model: Model | Callable, params: Params, x, *, batch_size: int = 1024) -> jax.Array:
    """Runs the model over ``x`` in chunks of ``batch_size`` rows (jitted; the last
    chunk is padded, so any ``n`` reuses the same compiled chunk).

    Returns:
      Predictions of shape ``(n, outputs)``.
    """
    apply_fn, params, _ = _resolve(model, params)
    x, _ = validate(x)
    batch_size = _positive_int(batch_size, "batch_size")
    return _predict_chunks(apply_fn, params, jnp.asarray(x), min(batch_size, x.shape[0]))


def evaluate(
    model: Model | Callable, params: Params, x, y, *, loss: str | Loss, metrics: Sequence = (), batch_size: int = 1024
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``(x, y)``; returns ``{"loss": ..., name: ...}``."""
    x, y = validate(x, y)
    apply_fn, params, _ = _resolve(model, params)
    y = _prepare_targets(_loss_name(loss), y, _output_shape(apply_fn, params, x), "y")
    pred = predict(apply_fn, params, x, batch_size=batch_size)
    out = {"loss": float(get_loss(loss)(pred, jnp.asarray(y)))}
    for name, fn in (get_metric(m) for m in metrics):
        out[name] = float(fn(pred, jnp.asarray(y)))
    return out


def plot_history(history: dict[str, np.ndarray], *, ax=None):
    """Plots training and validation loss per epoch; returns the matplotlib figure.

    Requires matplotlib (``pip install 'jaxnn[examples]'``).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install matplotlib") from None
    if "loss" not in history or "epoch" not in history:
        raise ValueError("history must be FitResult.history (with 'epoch' and 'loss')")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for name in ("loss", "val_loss"):
        if name in history:
            ax.plot(history["epoch"], history[name], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
