"""Many models at once: ensembles over seeds and sweeps over hyperparameters, trained
in one compiled program with ``vmap``.

``fit_many`` runs ``fit``'s compiled loop vmapped over K models. Each model has its
own key (initial params and data order) and its own optimizer hyperparameters, which
are data (``optax.inject_hyperparams``): a new sweep with the same shapes reuses the
compiled program. On an accelerator this is the cheapest way to train small networks:
K models cost about as much as one until the chip is full.
"""

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnn import _loop, optim, parallel
from jaxnn._checks import MAX_ELEMENTS, check_elements
from jaxnn._plan import MAX_EPOCHS, EarlyStopping, _apply_fn, _check_key, _epochs_per_call, _positive_int, prepare
from jaxnn.data import validate
from jaxnn.losses import get_loss
from jaxnn.mlp import Model, Params

AXIS = "models"


class ManyResult(NamedTuple):
    """What ``fit_many`` returns.

    Attributes:
      params: the K models' parameters, stacked on a leading axis of size K.
      state: the final stacked ``TrainState``.
      history: per-epoch arrays of shape ``(K, epochs)``, NaN after a model stopped.
      epochs_run: shape ``(K,)``.
      stop_reasons: one per model: ``None``, ``"early_stopping"`` or ``"non_finite_loss"``.
      hyperparams: the swept values, ``{name: array of shape (K,)}``.
      table: one dict per model (index, hyperparameters, final metrics), best first
        by ``monitor``.
      monitor: the history entry the table is sorted by.
    """

    params: Params
    state: _loop.TrainState
    history: dict[str, np.ndarray]
    epochs_run: np.ndarray
    stop_reasons: list
    hyperparams: dict[str, np.ndarray]
    table: list[dict]
    monitor: str


def _sweep_values(hyperparams: dict, num_models: int | None) -> tuple[dict, int]:
    values = {}
    for name, v in (hyperparams or {}).items():
        arr = np.atleast_1d(np.asarray(v, np.float64))
        if arr.ndim != 1 or not (np.abs(arr) <= np.finfo(np.float32).max).all():
            raise ValueError(f"hyperparams[{name!r}] must be finite float32 numbers (one per model), got {v!r}")
        values[name] = arr.astype(np.float32)
    sizes = {len(a) for a in values.values() if len(a) > 1}
    if num_models is not None:
        sizes.add(_positive_int(num_models, "num_models", MAX_ELEMENTS))
    if len(sizes) > 1:
        raise ValueError(f"hyperparameter sweeps and num_models disagree on the number of models: {sorted(sizes)}")
    k = sizes.pop() if sizes else 1
    return {n: np.broadcast_to(a, (k,)) for n, a in values.items()}, k  # views: copied once k is checked


def _sweep_optimizer(optimizer: str, values: dict) -> optax.GradientTransformation:
    if not isinstance(optimizer, str) or optimizer not in optim.OPTIMIZERS:
        raise ValueError(f"fit_many needs an optimizer name, one of {list(optim.OPTIMIZERS)}; got {optimizer!r}")
    if "learning_rate" in values and not (values["learning_rate"] > 0).all():
        raise ValueError("every learning_rate must be > 0")
    tx = optax.inject_hyperparams(optim.FACTORIES[optimizer])(**{n: float(v[0]) for n, v in values.items()})
    return _cached_transform(optimizer, tuple(sorted(values)), tx)


_TRANSFORMS: dict = {}


def _cached_transform(optimizer: str, names: tuple, tx):
    # One transformation object per (optimizer, swept names): equal sweeps share a program.
    return _TRANSFORMS.setdefault((optimizer, names), tx)


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
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    progress: bool = True,
    epochs_per_call: int | None = None,
    unroll: int | None = None,
    eval_batch_size: int = 1024,
    devices=None,
) -> ManyResult:
    """Trains K models at once on the same data: one compiled program, vmapped.

    Args:
      model: a :class:`jaxnn.Model` (``init`` is used unless ``init_params`` is given).
      x, y, loss, batch_size, epochs, shuffle, validation_data, validation_split,
        metrics, early_stopping, progress, epochs_per_call, unroll, eval_batch_size:
        as in :func:`jaxnn.fit`, per model.
      key: the sweep's key; model ``i`` uses ``split(key, K)[i]`` for its initial
        params (``fold_in(., 1)``) and its data order (as ``fit``'s key).
      init_params: start every model from these params instead of its own init (to
        compare hyperparameters from one starting point).
      num_models: K, when no hyperparameter is swept (an ensemble over seeds).
      optimizer: ``"sgd"``, ``"momentum"``, ``"adam"`` or ``"adamw"``.
      hyperparams: ``{name: K values}`` for the optimizer's hyperparameters
        (``learning_rate``, ``momentum``, ``weight_decay``, ``b1``, ...); a single
        value is shared. Default learning rate 0.01.
      devices: as in ``fit``. With several devices, the K models are split over them
        (K must divide by the device count) and the data is replicated: each device
        trains its share of the models.

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
    apply_fn = _apply_fn(model)
    key = _check_key(key)
    get_loss(loss)
    epochs = _positive_int(epochs, "epochs", MAX_EPOCHS)
    values, k = _sweep_values({"learning_rate": optim.DEFAULT_LEARNING_RATE, **(hyperparams or {})}, num_models)
    tx = _sweep_optimizer(optimizer, values)
    if init_params is None and not isinstance(model, Model):
        raise TypeError("fit_many needs init_params when model is a plain apply_fn")
    one_shape = jax.eval_shape(model.init, key) if init_params is None else init_params
    per_model = sum(math.prod(jnp.shape(p)) for p in jax.tree.leaves(one_shape))
    check_elements(k * per_model, f"{k} models x {per_model} parameters")
    values = {n: v.copy() for n, v in values.items()}
    keys = jax.random.split(key, k)
    if init_params is None:
        stacked = jax.vmap(lambda kk: model.init(jax.random.fold_in(kk, 1)))(keys)
    else:
        stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (k, *jnp.shape(p))), init_params)
    one = jax.tree.map(lambda p: p[0], stacked)
    plan, x, y, x_val, y_val = prepare(
        apply_fn,
        one,
        x,
        y,
        key=key,
        loss=loss,
        tx=tx,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_remainder=False,
        validation_data=validation_data,
        validation_split=validation_split,
        metrics=metrics,
        early_stopping=early_stopping,
        unroll=unroll,
        eval_batch_size=eval_batch_size,
        chunk=_epochs_per_call(epochs_per_call, epochs, progress, None),
        axis_name=AXIS,
    )
    carry = _start_many(plan, stacked, {n_: jnp.asarray(v) for n_, v in values.items()}, keys)
    data = _loop.device_data(plan, x, y, x_val, y_val, calls=1)
    devs = parallel.resolve_devices(devices)
    if len(devs) > 1:  # models split over the devices, data replicated
        if k % len(devs):
            raise ValueError(f"{k} models do not split evenly over {len(devs)} devices; pass devices= a divisor of {k}")
        mesh = Mesh(np.array(devs), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
        carry = jax.device_put(carry, NamedSharding(mesh, PartitionSpec(AXIS)))
        data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
    else:
        data = jax.device_put(data)
    carry, history = _run_many(plan, carry, data, epochs, progress)
    return _finish_many(plan, carry, history, values)


def _start_one(plan, params, hyper, key):
    carry = _loop._start(plan, params, None, key)
    opt = carry.state.opt_state
    opt = opt._replace(
        hyperparams={**opt.hyperparams, **{n: v.astype(opt.hyperparams[n].dtype) for n, v in hyper.items()}}
    )
    return carry._replace(state=carry.state._replace(opt_state=opt))


_start_many = jax.jit(jax.vmap(_start_one, in_axes=(None, 0, 0, 0)), static_argnums=0)


def _chunk_many(plan, carry, data, target):
    return jax.vmap(lambda c: _loop._chunk(plan, c, data, target), axis_name=AXIS)(carry)


run_chunk_many = jax.jit(_chunk_many, static_argnums=0, donate_argnums=1)


def _run_many(plan, carry, data, epochs: int, progress: bool):
    records: dict[str, list] = {}
    bar = _loop._progress_bar(epochs, 0) if progress else None
    done = 0
    while True:
        carry, rec, (epoch, stop) = run_chunk_many(plan, carry, data, np.int32(epochs))
        rec, epoch, stop = jax.device_get((rec, epoch, stop))  # one sync per chunk
        for name, v in rec.items():
            if name != "ran":
                records.setdefault(name, []).append(np.where(rec["ran"], v, np.nan))
        if bar is not None:
            bar.update(int(epoch.max()) - done)
            bar.set_postfix({"best loss": f"{np.nanmin(records['loss'][-1]):.4g}"})
        done = int(epoch.max())
        if not ((epoch < epochs) & (stop == 0)).any():
            break
    if bar is not None:
        bar.close()
    history = {name: np.concatenate(parts, axis=1)[:, :epochs] for name, parts in records.items()}
    history["epoch"] = np.arange(1, history["loss"].shape[1] + 1)
    return carry, history


def _finish_many(plan, carry, history, values) -> ManyResult:
    stop = np.asarray(carry.stop)
    if (stop == _loop.NON_FINITE_PARAMS).any():
        first = int(np.argmax(stop == _loop.NON_FINITE_PARAMS))
        raise _loop.non_finite_params_error(jax.tree.map(lambda p: p[first], carry.state.params))
    epochs_run = np.asarray(carry.state.epoch)
    reasons = [{0: None, 1: "early_stopping", 2: "non_finite_loss"}[int(s)] for s in stop]
    params = carry.state.params
    if plan.early is not None and plan.early.restore_best:
        has_best = np.isfinite(np.asarray(carry.best))
        params = jax.tree.map(
            lambda b, p: jnp.where(has_best.reshape(-1, *[1] * (p.ndim - 1)), b, p), carry.best_params, params
        )
    monitor = "val_loss" if "val_loss" in history else "loss"
    if plan.early is not None:
        monitor = plan.early.monitor
    table = summary_table(history, epochs_run, values, monitor)
    if (stop == 2).any():
        warnings.warn(
            f"{int((stop == 2).sum())} of {len(stop)} models stopped with a non-finite loss (see stop_reasons); "
            "they keep their last finite parameters. A learning rate that is too large is the usual cause.",
            RuntimeWarning,
            stacklevel=3,
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
    apply_fn = _apply_fn(model)
    x, _ = validate(x)
    return jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(stacked_params, jnp.asarray(x)).mean(axis=0)
