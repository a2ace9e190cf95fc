"""Training: a step is a pure function from state to state; a run is that step
scanned over batches and epochs in one compiled call.

``make_train_step`` is the seed's training loop body (forward pass, loss, ``jax.grad``,
optax update) for people who write their own loop. ``fit`` compiles whole chunks of
epochs (shuffle, fixed-shape padded batches, validation, early stopping and a NaN
guard all inside XLA) and only talks to the host between chunks. ``predict`` and
``evaluate`` run a model over data in fixed-size chunks. Argument checks live in
``jaxnn._setup``, the compiled loop in ``jaxnn._loop``, the host loop in
``jaxnn._driver``, device placement in ``jaxnn._placement``.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import (
    _driver,
    _flax,
    _inputs,
    _loop,
    _models,
    _precision,
    _programs,
    _records,
    _setup,
    _stream,
    optim,
)
from jaxnn._checks import positive_int
from jaxnn.data import validate, validate_targets
from jaxnn.losses import Loss, get_loss
from jaxnn.metrics import get_metric
from jaxnn.mlp import Model, Params
from jaxnn.options import Checkpoints, EarlyStopping, FitResult, Stop, TrainState, Tuning
from jaxnn.settings import Settings


def init_state(
    params: Params, optimizer: optax.GradientTransformation, key: jax.Array
) -> TrainState:
    """A fresh :class:`TrainState` for ``params`` (step 0, epoch 0)."""
    return TrainState(
        params,
        optimizer.init(params),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        _models.check_key(key),
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
    return _loop.make_train_step(_models.apply_function(apply_fn), get_loss(loss), optimizer)


def fit(
    model: Model | Callable,
    params: Params,
    x,
    y,
    *,
    loss: str | Loss,
    key: jax.Array,
    optimizer: str | optim.Optimizer | optax.GradientTransformation = "sgd",
    batch_size: int = 32,
    epochs: int = 1,
    shuffle: bool = True,
    validation: tuple | float | None = None,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    sample_weight=None,
    checkpoints: Checkpoints | None = None,
    resume=None,
    log_dir=None,
    devices=None,
    progress: bool = True,
    tuning: Tuning | None = None,
) -> FitResult:
    """Trains ``model`` on ``(x, y)``: shuffled mini-batches, one compiled call per
    chunk of epochs.

    Args:
      model: a :class:`jaxnn.Model`, any ``apply_fn(params, x) -> predictions``, a
        ``flax.linen`` Module (``params`` its variables from ``module.init``), or a
        ``flax.nnx`` Module (``params=None`` trains its ``nnx.Param`` state, which
        is written back into the module at the end; ``FitResult.params`` holds it).
      params: initial parameters (not modified).
      x: inputs, shape ``(n, features)``: NumPy (or lists) or ``jax.Array``. On an
        accelerator a float NumPy array of 1 MiB or more is uploaded once per
        content: passed again with the same bytes, its checked device copy is reused
        (``jaxnn.data.clear_uploads`` frees them). A ``jax.Array`` is checked once.
        Data bigger than memory: a NumPy memmap (``np.load(path, mmap_mode="r")``),
        any 2-D row-indexable array that is not a NumPy array, or a Grain dataset of
        rows is read from disk a chunk of steps at a time while training, and trains
        bit for bit as the same data in memory (validation as a pair in memory; rows
        checked as read; over several processes each passes the same file and all
        of ``y``, and reads only its devices' rows of each batch).
      y: targets: ``(n, outputs)`` (``(n,)`` is taken as ``(n, 1)`` for a
        one-output model), or integer labels ``(n,)`` for softmax_cross_entropy.
      loss: a loss name from ``jaxnn.losses.LOSSES`` or a callable
        ``loss(predictions, targets, weights)``.
      key: the run's PRNG key; its streams are listed in ``jaxnn.rng``.
      optimizer: a value with its hyperparameters, ``jaxnn.optim.sgd(0.1)`` (the
        seed's plain SGD at learning rate 0.1), ``momentum``, ``nesterov``, ``adam``
        or ``adamw``; a name alone (``"sgd"``, ``"adam"``, ...: learning rate 0.01);
        or any ``optax.GradientTransformation``. A named optimizer's hyperparameters
        are data in its state: a new learning rate reuses the compiled program.
      batch_size: rows per update, in ``[1, n]``; 1 updates after every row. The
        last partial batch is padded and masked (no row dropped, no new shape).
      epochs: the epoch to train up to (counting the epochs of a resumed run).
      shuffle: reshuffle rows every epoch, on the device (not when one batch holds
        every row: its gradient is the same sum in any order).
      validation: ``(x_val, y_val)`` or ``(x_val, y_val, weights_val)``, evaluated
        after every epoch, or a fraction in (0, 1) of ``(x, y)`` (and
        ``sample_weight``) to hold out at random.
      metrics: names (``"accuracy"``, ``"rmse"``, ``"mae"``, ``"r2"``) or callables,
        computed on validation data after every epoch (on training data if none).
      early_stopping: an :class:`EarlyStopping`, or ``None``.
      sample_weight: ``None`` or one weight >= 0 per row of ``x`` (shape ``(n,)``):
        each batch's loss is then the weighted mean over its rows (the loss's
        ``weights``); the epoch's recorded loss averages the batches by rows.
      checkpoints: a :class:`Checkpoints` (folder, interval, how many to keep, metadata).
      resume: continue a run: a checkpoint file or folder (written by ``checkpoints``),
        or an earlier :class:`FitResult` or :class:`TrainState`. Its params, optimizer
        state, step, epoch, key (and, from a checkpoint, early-stopping state, history
        and run id) replace ``params`` and ``key``, which must still describe the same
        model. ``epochs``, the hyperparameters, ``batch_size``, the data and the speed
        settings are this call's; a checkpoint trained with another loss, optimizer,
        metrics, validation or early stopping is refused, as is ``epochs`` below its
        epoch (checked before anything compiles).
      log_dir: a folder for TensorBoard event files (per-epoch loss, validation loss,
        metrics, learning rate and epoch time; the hyperparameters), see
        ``jaxnn.logs``; needs ``pip install 'jaxnn-mlp[tensorboard]'``.
      devices: ``None`` (every device), a count, or a list of devices. With more than
        one, every batch is split over them (data parallel; params replicated); a
        batch that does not divide evenly is padded and masked, with a warning.
      progress: show a progress bar (updated between compiled chunks).
      tuning: a :class:`Tuning`: speed and memory knobs (the compute dtype, e.g.
        bfloat16; epochs per compiled call, unroll, evaluation chunk, dropping the
        last partial batch); ``None``: ``Tuning()``.

    Returns:
      A :class:`FitResult`.

    Raises:
      TypeError, ValueError: bad data, shapes, labels or settings, before compiling.
    """
    settings = Settings(
        loss=loss,
        key=key,
        optimizer=optimizer,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=shuffle,
        validation=validation,
        metrics=metrics,
        early_stopping=early_stopping,
        sample_weight=sample_weight,
        checkpoints=checkpoints,
        resume=resume,
        log_dir=log_dir,
        devices=devices,
        progress=progress,
        tuning=tuning,
    )
    run = _setup.setup(model, params, x, y, settings)
    with run:
        carry, stop, history = _driver.train(run)
    params, stop = _driver.finish(run.plan.early, carry, stop), Stop(int(stop))
    message = ""
    if stop != Stop.COMPLETED:
        lr = run.hyperparams.get("learning_rate")
        message = _driver.stop_message(
            run.plan.early, stop, int(carry.stop_step), run.plan.n_batches, lr
        )
    if stop == Stop.NON_FINITE_LOSS:
        _driver.warn(message)
    if run.nnx_module is not None:
        _flax.update_nnx(run.nnx_module, params)
    return FitResult(params, carry.state, history.arrays(), history.epochs, stop, message)


class FitProgram(NamedTuple):
    """The first compiled call of a :func:`fit`, from :func:`lower`.

    Attributes:
      lowered: a ``jax.stages.Lowered``: ``.as_text()`` is its StableHLO,
        ``.compile()`` the XLA executable (``.as_text()``, ``.cost_analysis()``).
      run: runs that program once on the fit's inputs and waits for it (to time the
        compiled program alone, without ``fit``'s checks and host work).
    """

    lowered: Any
    run: Callable[[], Any]


def lower(model: Model | Callable, params: Params, x, y, **fit_keywords) -> FitProgram:
    """The program :func:`fit` would compile first for these arguments, lowered and
    ready to run, with every argument checked as ``fit`` checks it. Nothing trains and
    nothing is written. A fit of one compiled call (no checkpoints, on one device)
    lowers its whole run; others lower one chunk of epochs from the start.

    Example:
      >>> import jaxnn
      >>> model = jaxnn.mlp([3, 4, 1])
      >>> x, y = jaxnn.make_regression(jax.random.key(0), n=32)
      >>> p = lower(model, model.init(jax.random.key(1)), x, y, loss="mse", key=jax.random.key(2), progress=False)
      >>> "dot_general" in p.lowered.as_text()
      True
    """
    settings = Settings(**{"progress": False, **fit_keywords})
    if settings.checkpoints is not None:
        raise ValueError("lower takes the arguments of an in-memory fit without checkpoints")
    run = _setup.setup(model, params, x, y, settings)
    if run.stream is not None:
        raise ValueError("lower takes the arguments of an in-memory fit without checkpoints")
    carry, data, _, _ = run.begin()
    target = np.int32(run.epochs)
    if isinstance(carry, _loop.Fresh):
        args = (run.plan, carry.state, carry.hyperparams, data, target)
        return FitProgram(
            _loop.run_fresh.lower(*args), lambda: jax.block_until_ready(_loop.run_fresh(*args))
        )
    copy = lambda: jax.tree.map(jnp.copy, carry)  # the chunk donates its carry
    return FitProgram(
        _loop.run_chunk.lower(run.plan, carry, data, target),
        lambda: jax.block_until_ready(_loop.run_chunk(run.plan, copy(), data, target)),
    )


def check_fit(model: Model | Callable, params: Params, x, y, **fit_keywords) -> None:
    """Checks every argument of :func:`fit` as ``fit`` checks them, before any work:
    the model and params, the data and its shapes, the settings, a checkpoint to
    resume from and the checkpoint folder it would write. Nothing compiles, trains or
    is written.

    Raises:
      TypeError, ValueError: what ``fit`` would raise for these arguments.

    Example:
      >>> import jaxnn
      >>> model = jaxnn.mlp([3, 4, 1])
      >>> x, y = jaxnn.make_regression(jax.random.key(0), n=32)
      >>> check_fit(model, model.init(jax.random.key(1)), x, y, loss="mse", key=jax.random.key(2), batch_size=64)
      Traceback (most recent call last):
      ...
      ValueError: batch_size must be in [1, 32], got 64
    """
    _setup.setup(model, params, x, y, Settings(**fit_keywords))


_predict_chunks = _programs.jit("predict", _records.forward_rows, (0, 3))


def predict(
    model: Model | Callable,
    params: Params,
    x,
    *,
    batch_size: int = 1024,
    compute_dtype: str | None = "auto",
) -> jax.Array:
    """Runs the model over ``x`` in chunks of ``batch_size`` rows (jitted; the last
    chunk is padded, so any ``n`` reuses the same compiled chunk), computing in
    ``compute_dtype`` as ``fit`` does.

    Returns:
      Predictions of shape ``(n, outputs)``.
    """
    apply_fn, params, _ = _models.resolve_model(model, params)
    batch_size = positive_int(batch_size, "batch_size")
    if _stream.is_stream(x):  # read from disk a chunk at a time
        source = _stream.Source(x)
        _models.output_shape(apply_fn, params, source.sample())
        apply_fn = _precision.with_compute_dtype(apply_fn, compute_dtype)
        chunk = min(batch_size, source.n)

        # in chunks of the in-memory path's shape, the last one padded: the same bits
        def run(
            rows,
        ):
            n = rows.shape[0]
            padded = rows[np.minimum(np.arange(-(-n // chunk) * chunk), n - 1)]
            return _predict_chunks(apply_fn, params, jnp.asarray(padded), chunk)[:n]

        return jnp.asarray(_stream.predict_rows(source, run, batch_size))
    x, _ = validate(x)
    _models.output_shape(apply_fn, params, x)  # a shape error now, not inside a compile
    apply_fn = _precision.with_compute_dtype(apply_fn, compute_dtype)
    return _predict_chunks(apply_fn, params, x, min(batch_size, x.shape[0]))


def evaluate(
    model: Model | Callable,
    params: Params,
    x,
    y,
    *,
    loss: str | Loss,
    metrics: Sequence = (),
    sample_weight=None,
    batch_size: int = 1024,
    compute_dtype: str | None = "auto",
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``(x, y)``; returns ``{"loss": ..., name: ...}``.

    ``sample_weight``: ``None`` or one weight >= 0 per row (shape ``(n,)``), as in
    :func:`fit`: the loss and metrics are then weighted means over the rows. With the
    ``batch_size`` and ``compute_dtype`` of a fit (its ``Tuning.eval_batch_size``) it
    reproduces that fit's ``history["val_loss"]`` and validation metrics.
    """
    streamed = _stream.is_stream(x)
    x, y = (x, validate_targets(y, x.shape)) if streamed else validate(x, y)
    apply_fn, params, _ = _models.resolve_model(model, params)
    weights = (
        ()
        if sample_weight is None
        else (np.asarray(_inputs.check_sample_weight(sample_weight, x.shape[0], "sample_weight")),)
    )
    sample = _stream.Source(x).sample() if streamed else x
    y = _inputs.prepare_targets(loss, y, _models.output_shape(apply_fn, params, sample), "y")
    pred = predict(apply_fn, params, x, batch_size=batch_size, compute_dtype=compute_dtype)
    named = (("loss", get_loss(loss)), *(get_metric(m) for m in metrics))
    values = _scores(tuple(fn for _, fn in named), pred, np.asarray(y), *weights)
    return {name: float(v) for (name, _), v in zip(named, values, strict=True)}


def _score(fns: tuple, pred, y, *weights) -> tuple:
    return tuple(fn(pred, y, *weights) for fn in fns)


_scores = _programs.jit("evaluate", _score)  # the loss and metrics in one program


def plot_history(history: dict[str, np.ndarray], *, ax=None):
    """Plots training and validation loss per epoch; returns the matplotlib figure.

    Requires matplotlib (``pip install 'jaxnn-mlp[examples]'``).
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
