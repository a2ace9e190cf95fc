"""Many models at once: ensembles over seeds and sweeps over hyperparameters, trained
in one compiled program with ``vmap``.

``fit_many`` runs ``fit``'s compiled loop vmapped over K models. Each model has its
own key (initial params and data order) and its own optimizer hyperparameters, which
are data (``optax.inject_hyperparams``): a new sweep with the same shapes reuses the
compiled program. On an accelerator this is the cheapest way to train small networks:
K models cost about as much as one until the chip is full.
"""

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _driver, _loop, _plan, checkpoint, logs, optim, parallel, precision, rng
from jaxnn._checks import MAX_ELEMENTS, MAX_EPOCHS, check_elements, positive_int
from jaxnn.data import validate
from jaxnn.losses import get_loss
from jaxnn.mlp import Model, Params
from jaxnn.types import Checkpoints, EarlyStopping, Stop, TrainState, Tuning

AXIS = "models"


class ManyResult(NamedTuple):
    """What ``fit_many`` returns.

    Attributes:
      params: the K models' parameters, stacked on a leading axis of size K.
      state: the final stacked ``TrainState`` (pass it as ``fit_many(..., resume=...)``).
      history: per-epoch arrays of shape ``(K, epochs)``, NaN after a model stopped.
      epochs_run: shape ``(K,)``.
      stop_reasons: one :class:`jaxnn.Stop` per model.
      hyperparams: the swept values, ``{name: array of shape (K,)}``.
      table: one dict per model (index, hyperparameters, final metrics), best first
        by ``monitor``.
      monitor: the history entry the table is sorted by.
    """

    params: Params
    state: TrainState
    history: dict[str, np.ndarray]
    epochs_run: np.ndarray
    stop_reasons: list
    hyperparams: dict[str, np.ndarray]
    table: list[dict]
    monitor: str


def _sweep_values(optimizer, hyperparams, num_models) -> tuple[dict, int]:
    optim.check_name(optimizer)
    if hyperparams is not None and not isinstance(hyperparams, dict):
        raise TypeError(f"hyperparams must be a dict {{name: values}}, got {hyperparams!r}")
    given = {"learning_rate": optim.DEFAULT_LEARNING_RATE, **(hyperparams or {})}
    dropout = given.pop("dropout", None)
    values = {n: np.atleast_1d(optim.check_hyperparam(optimizer, n, v)).astype(np.float32) for n, v in given.items()}
    if dropout is not None:
        rates = np.atleast_1d(np.asarray(dropout, dtype=object))
        if rates.ndim != 1 or not all(isinstance(r, int | float | np.number) and 0 <= r < 1 for r in rates):
            raise ValueError(f"dropout must be a rate in [0, 1) or one per model, got {dropout!r}")
        values["dropout"] = rates.astype(np.float32)
    sizes = {len(a) for a in values.values() if len(a) > 1}
    if num_models is not None:
        sizes.add(positive_int(num_models, "num_models", MAX_ELEMENTS))
    if len(sizes) > 1:
        raise ValueError(f"hyperparameter sweeps and num_models disagree on the number of models: {sorted(sizes)}")
    k = sizes.pop() if sizes else 1
    return {n: np.broadcast_to(a, (k,)) for n, a in values.items()}, k  # views: copied once k is checked


# Over 60 lines only by its signature and docstring (every argument documented).
def fit_many(
    model: Model | Callable,
    x,
    y,
    *,
    loss,
    key: jax.Array,
    init_params: Params | None = None,
    num_models: int | None = None,
    optimizer: str = "sgd",
    hyperparams: dict[str, Sequence[float]] | None = None,
    batch_size: int = 32,
    epochs: int = 1,
    shuffle: bool = True,
    validation: tuple | float | None = None,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    checkpoints: Checkpoints | None = None,
    resume=None,
    log_dir=None,
    model_devices=None,
    compute_dtype: str | None = "auto",
    progress: bool = True,
    tuning: Tuning | None = None,
) -> ManyResult:
    """Trains K models at once on the same data: one compiled program, vmapped.

    Args:
      model: a :class:`jaxnn.Model` (``init`` is used unless ``init_params`` is given).
      x, y, loss: as in :func:`jaxnn.fit`; so are ``batch_size``, ``epochs``, ``shuffle``,
        ``validation``, ``metrics``, ``early_stopping``, ``checkpoints``,
        ``compute_dtype``, ``progress`` and ``tuning``, per model.
      key: the sweep's key; model ``i``'s own key is ``jaxnn.rng.model_keys(key, K)[i]``:
        its initial params come from that key's ``"init"`` stream, its data order
        from its ``"shuffle"`` stream (as ``fit``'s would).
      init_params: start every model from these params instead of its own init (to
        compare hyperparameters from one starting point).
      num_models: K, when no hyperparameter is swept (an ensemble over seeds).
      optimizer: a name from ``jaxnn.optim.OPTIMIZERS``.
      hyperparams: ``{name: K values}`` for the optimizer's hyperparameters
        (``learning_rate``, ``momentum``, ``weight_decay``, ``b1``, ``l2``, ...; see
        ``jaxnn.optim.HYPERPARAMS``) and ``dropout`` (for a ``jaxnn.mlp`` built with
        dropout: the rate of its dropout layers); a single value is shared. All are
        data: one compiled program for any values. Default learning rate 0.01.
      resume: a checkpoint file or folder written by ``checkpoints``, or an earlier
        :class:`ManyResult` (its stacked state), to continue from, by the rules of
        :func:`jaxnn.fit`'s ``resume``.
      log_dir: a folder for TensorBoard logs: one run per model (``model-000``, ...)
        with its hyperparameters, for TensorBoard's HParams view (``jaxnn.logs``).
      model_devices: the devices the K models are split over (``None``: every device;
        a count; a list). K must divide by their number; the data is replicated, so
        each device trains its share of the models. (``fit``'s ``devices`` instead
        splits every batch of one model.)

    Returns:
      A :class:`ManyResult`; ``best_params(result)`` picks the best model and
      ``predict_ensemble`` averages their predictions.

    Example:
      >>> import jaxnn
      >>> x, y = jaxnn.make_regression(jax.random.key(0), n=64)
      >>> r = fit_many(jaxnn.mlp([3, 4, 1]), x, y, loss="mse", key=jax.random.key(1), epochs=2,
      ...              hyperparams={"learning_rate": [0.01, 0.1, 0.3]}, progress=False)
      >>> r.history["loss"].shape
      (3, 2)
    """
    apply_fn = _plan.apply_function(model)
    key = _plan.check_key(key)
    get_loss(loss)
    epochs = positive_int(epochs, "epochs", MAX_EPOCHS)
    values, k = _sweep_values(optimizer, hyperparams, num_models)
    tx = optim.transform(optimizer, tuple(sorted(n for n in values if n != "dropout")))
    if "dropout" in values and not (isinstance(model, Model) and getattr(model.apply, "dropout", ())):
        raise ValueError("sweeping dropout needs a jaxnn.mlp built with dropout (its layers with a rate > 0 take the "
                         "swept rate)")  # fmt: skip
    checkpoints, tuning = _plan.check_checkpoints(checkpoints), _plan.check_tuning(tuning)
    log_dir = logs.check_log_dir(log_dir) if jax.process_index() == 0 else None
    if init_params is None and not isinstance(model, Model):
        raise TypeError("fit_many needs init_params when model is a plain apply_fn")
    _plan.check_host_params(init_params)
    one_shape = jax.eval_shape(model.init, key) if init_params is None else init_params
    per_model = sum(math.prod(jnp.shape(p)) for p in jax.tree.leaves(one_shape))
    check_elements(k * per_model, f"{k} models x {per_model} parameters")
    placement = parallel.for_models(model_devices, k, AXIS)
    path = _check_resume_many(resume, one_shape, k)
    progress = bool(progress) and jax.process_index() == 0
    plan, data = _plan.plan_run(
        precision.with_compute_dtype(apply_fn, compute_dtype), one_shape, x, y,
        key=key, loss=loss, tx=tx, batch_size=batch_size, shuffle=shuffle, validation=validation, metrics=metrics,
        early_stopping=early_stopping, tuning=tuning, placement=parallel.OneDevice(), axis_name=AXIS, chunk=1,
    )  # fmt: skip
    path, saver, done = _plan.checkpointing(checkpoints, path, epochs=epochs, plan=plan, loss=loss,
                                            optimizer=optimizer, spec=getattr(model, "spec", None))  # fmt: skip
    done = int(np.max(resume.epochs_run)) if isinstance(resume, ManyResult) else done
    plan = plan._replace(chunk=_plan.epochs_per_call(tuning, epochs - done, progress, checkpoints))
    values = {n: v.copy() for n, v in values.items()}  # numpy: a device copy could be donated with the carry
    run = {"optimizer": optimizer, **values, "batch_size": plan.batch_size, "epochs": epochs}
    with saver or contextlib.nullcontext(), _plan.epoch_log(log_dir, plan, run, k) as log:
        carry, history = _begin(plan, model, init_params, rng.model_keys(key, k), values, path, resume)
        carry, data = placement.place(carry, data)
        run = _loop.Runner(
            lambda c, d, t: _run_chunk_many(plan, c, d, t), lambda c, d, s, b: _run_replay_many(plan, c, d, s, b)
        )
        carry, stops = _driver.drive(
            run, carry, data, epochs=epochs, history=history, progress=progress, saver=saver, log=log
        )
    return _finish_many(plan, carry, stops, history.arrays(), values)


def _with_dropout(state: TrainState, values: dict) -> TrainState:
    """``state`` with this call's swept dropout rates (model state, so no recompile per value)."""
    if "dropout" not in values:
        return state
    return state._replace(model_state={**(state.model_state or {}), "dropout_rate": values["dropout"]})


def _stacked_start(model, init_params, keys) -> TrainState:
    k = keys.shape[0]
    if init_params is None:
        variables = jax.vmap(lambda kk: model.init(rng.stream(kk, "init")))(keys)
    else:
        variables = jax.tree.map(lambda p: jnp.broadcast_to(p, (k, *jnp.shape(p))), init_params)
    params, model_state = _plan.split_variables(_plan.apply_function(model), variables)
    zeros = jnp.zeros((k,), jnp.int32)
    return TrainState(params, None, zeros, zeros, keys, model_state)


def _check_resume_many(resume, one_params, k: int):
    """A checkpoint path to restore once the carry exists, or ``None``."""
    if resume is None or isinstance(resume, str | os.PathLike):
        return resume
    if not isinstance(resume, ManyResult):
        raise TypeError(f"fit_many's resume must be a checkpoint path or a ManyResult, got {type(resume).__name__}")
    shapes = [(k, *jnp.shape(a)) for a in jax.tree.leaves(one_params)]
    if [jnp.shape(a) for a in jax.tree.leaves(resume.state.variables)] != shapes:
        raise ValueError("resume's params do not have the shapes of these models' params (same model, same K)")
    return None


def _begin(plan, model, init_params, keys, values, path, resume):
    """The initial carry and history: fresh, from a ManyResult, or from a checkpoint."""
    if isinstance(resume, ManyResult):  # the key goes through start unchanged and the carry is donated
        start = resume.state._replace(key=_loop.copy_key(resume.state.key))
        history = _driver.History(offset=int(np.max(resume.epochs_run)))
    else:
        start, history = _stacked_start(model, init_params, keys), _driver.History()
    optimizer_values = {n: v for n, v in values.items() if n != "dropout"}
    carry = _start_many(plan, _with_dropout(start, values), optimizer_values)
    if path is not None:
        carry, prior, _ = checkpoint.restore_carry(path, carry)  # within an epoch: only streamed fits
        carry, history = _loop.with_hyperparams(carry, optimizer_values), _driver.History(prior)
        carry = carry._replace(state=_with_dropout(carry.state, values))
    return carry, history


_start_many = jax.jit(jax.vmap(_loop.initial_carry, in_axes=(None, 0, 0)), static_argnums=0)


def _chunk_many(plan, carry, data, target):
    return jax.vmap(lambda c: _loop.train_chunk(plan, c, data, target), axis_name=AXIS)(carry)


_run_chunk_many = jax.jit(_chunk_many, static_argnums=0, donate_argnums=1)


def _replay_many(plan, carry, data, start, first_bad):
    return jax.vmap(lambda c, s, b: _loop.replay(plan, c, data, s, b), axis_name=AXIS)(carry, start, first_bad)


_run_replay_many = jax.jit(_replay_many, static_argnums=0, donate_argnums=1)


def _finish_many(plan, carry, stops, history, values) -> ManyResult:
    params = _driver.finish(plan.early, carry, stops)
    reasons = [Stop(int(s)) for s in stops]
    monitor = plan.early.monitor if plan.early is not None else ("val_loss" if "val_loss" in history else "loss")
    epochs_run = np.asarray(carry.state.epoch)
    table = summary_table(history, epochs_run, values, monitor)
    if bad := reasons.count(Stop.NON_FINITE_LOSS):
        _driver.warn(
            f"{bad} of {len(reasons)} models stopped with a non-finite loss (see stop_reasons); "
            "they keep their last finite parameters. A learning rate that is too large is the usual cause."
        )
    return ManyResult(params, carry.state, history, epochs_run, reasons, values, table, monitor)


def _maximise(monitor: str) -> bool:
    return monitor.removeprefix("val_") in ("accuracy", "r2")


def summary_table(history: dict, epochs_run, values: dict, monitor: str) -> list[dict]:
    """One row per model (its hyperparameters and last recorded metrics), best first."""
    rows = []
    for i in range(len(epochs_run)):
        row: dict[str, Any] = {
            "model": i,
            **{n: float(v[i]) for n, v in values.items()},
            "epochs_run": int(epochs_run[i]),
        }
        for name, h in history.items():
            if name != "epoch":
                finite = h[i][np.isfinite(h[i])]
                row[name] = float(finite[-1]) if finite.size else float("nan")
        rows.append(row)
    sign = -1.0 if _maximise(monitor) else 1.0
    return sorted(rows, key=lambda r: (not np.isfinite(r[monitor]), sign * np.nan_to_num(r[monitor], nan=0.0)))


def best_params(result: ManyResult) -> Params:
    """The parameters of the table's first (best) model."""
    i = result.table[0]["model"]
    return jax.tree.map(lambda p: p[i], result.params)


def predict_ensemble(model: Model | Callable, stacked_params: Params, x) -> jax.Array:
    """The mean of the K models' predictions for ``x``: shape ``(n, outputs)``."""
    apply_fn = _plan.apply_function(model)
    x, _ = validate(x)
    return jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(stacked_params, jnp.asarray(x)).mean(axis=0)
