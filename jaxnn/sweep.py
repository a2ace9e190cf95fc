"""Many models at once: ensembles over seeds and sweeps over hyperparameters, trained
in one compiled program with ``vmap``.

``fit_many`` runs ``fit``'s compiled loop vmapped over K models, with ``fit``'s
keywords. Each model has its own key (initial params and data order) and its own
optimizer hyperparameters, which are data (one value per model:
``optimizer=jaxnn.optim.sgd([0.01, 0.1, 1.0])``): a new sweep with the same shapes
reuses the compiled program. On an accelerator this is the cheapest way to train small networks:
K models cost about as much as one until the chip is full.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import _driver, _models, _setup, optim
from jaxnn.data import validate
from jaxnn.distributed import fetch
from jaxnn.metrics import higher_is_better
from jaxnn.mlp import Model, Params
from jaxnn.options import Checkpoints, EarlyStopping, ManyResult, Stop, Tuning
from jaxnn.settings import Settings


def fit_many(
    model: Model | Callable,
    params: Params | None,
    x,
    y,
    *,
    loss,
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
    num_models: int | None = None,
    dropout=None,
) -> ManyResult:
    """Trains K models at once on the same data: one compiled program, vmapped.

    Every keyword of :func:`jaxnn.fit` means the same here, per model; these differ:

    Args:
      model: a :class:`jaxnn.Model` (or an ``apply_fn(params, x)`` with ``params``).
      params: ``None``: model ``i`` starts from its own ``model.init`` (the ``"init"``
        stream of its key); or params every model starts from (to compare
        hyperparameters from one starting point).
      key: the run's key; model ``i``'s own key is ``jaxnn.rng.model_keys(key, K)[i]``:
        its initial params and its data order come from that key's streams (as
        ``fit``'s would).
      optimizer: as in ``fit``; a hyperparameter given as a 1-D sequence holds one
        value per model (``jaxnn.optim.sgd([0.01, 0.1, 1.0])`` trains three models).
        Values are data: one compiled program for any values.
      resume: a checkpoint file or folder written by ``checkpoints``, or an earlier
        :class:`ManyResult` (its stacked state), by the rules of ``fit``'s ``resume``.
      log_dir: TensorBoard logs: one run per model (``model-000``, ...) with its
        hyperparameters, for TensorBoard's HParams view (``jaxnn.logs``).
      devices: the devices the K models are split over (``None``: every device; a
        count; a list); K must divide by their number and the data is replicated.
        (``fit``'s one model splits its batches over its devices instead.)
      num_models: K when no hyperparameter has one value per model (an ensemble over
        seeds).
      dropout: for a ``jaxnn.mlp`` built with dropout: the rate of its dropout layers,
        one number or one per model (model state: no recompile per value).

    Returns:
      A :class:`jaxnn.ManyResult`; ``best_params(result)`` picks the best model and
      ``predict_ensemble`` averages their predictions.

    Example:
      >>> import jaxnn
      >>> x, y = jaxnn.make_regression(jax.random.key(0), n=64)
      >>> r = jaxnn.fit_many(jaxnn.mlp([3, 4, 1]), None, x, y, loss="mse", key=jax.random.key(1), epochs=2,
      ...                    optimizer=jaxnn.optim.sgd([0.01, 0.1, 0.3]), progress=False)
      >>> r.history["loss"].shape
      (3, 2)
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
    run = _setup.setup(model, params, x, y, settings, _setup.Models(num_models, dropout))
    with run:
        carry, stops, history = _driver.train(run)
    # the models were split over the processes: every process gets them all
    if jax.process_count() > 1:
        carry = fetch(carry)
    params = _driver.finish(run.plan.early, carry, stops)
    reasons = [Stop(int(s)) for s in stops]
    history = history.arrays()
    monitor = (
        run.plan.early.monitor
        if run.plan.early is not None
        else ("val_loss" if "val_loss" in history else "loss")
    )
    epochs_run = np.asarray(carry.state.epoch)
    table = _summary_table(history, epochs_run, run.hyperparams, monitor, run.plan.metrics)
    if bad := reasons.count(Stop.NON_FINITE_LOSS):
        _driver.warn(
            f"{bad} of {len(reasons)} models stopped with a non-finite loss (see stop_reasons); "
            "they keep their last finite parameters. A learning rate that is too large is the usual cause."
        )
    return ManyResult(
        params, carry.state, history, epochs_run, reasons, run.hyperparams, table, monitor
    )


def _summary_table(history: dict, epochs_run, values: dict, monitor: str, metrics=()) -> list[dict]:
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
    sign = -1.0 if higher_is_better(monitor, metrics) else 1.0
    return sorted(
        rows, key=lambda r: (not np.isfinite(r[monitor]), sign * np.nan_to_num(r[monitor], nan=0.0))
    )


def best_params(result: ManyResult) -> Params:
    """The parameters of the table's first (best) model."""
    i = result.table[0]["model"]
    return jax.tree.map(lambda p: p[i], result.params)


def predict_ensemble(model: Model | Callable, stacked_params: Params, x) -> jax.Array:
    """The mean of the K models' predictions for ``x``: shape ``(n, outputs)``."""
    apply_fn = _models.apply_function(model)
    x, _ = validate(x)
    return jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(stacked_params, jnp.asarray(x)).mean(
        axis=0
    )
