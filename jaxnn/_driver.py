"""The host side of training, shared by ``fit``, ``fit_many`` and ``search`` (private).

:func:`train` runs a checked run (``jaxnn._setup.Run``) through its runner (the
``jaxnn._loop.Runner`` protocol: one small record per compiled chunk, nothing per
step). :func:`drive` is the plain Python around the chunks: the history, the progress bar and the
checkpoints. :func:`finish` turns the final carry into params (the best epoch's where
early stopping kept them), for one model or a stacked axis of models alike, and
:func:`stop_message` says why a model stopped. This module compiles nothing.
"""

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _models
from jaxnn.distributed import fetch
from jaxnn.options import Stop


class History:
    """Per-epoch records, accumulated chunk by chunk: ``(..., epochs)`` arrays.
    ``prior``: the history of the epochs before (from a checkpoint); ``offset``: the
    epochs run before without one (a run resumed from a ``TrainState``)."""

    def __init__(self, prior: dict | None = None, offset: int = 0):
        self.parts = {
            k: [np.asarray(v, np.float32)] for k, v in (prior or {}).items() if k != "epoch"
        }
        self.offset = offset
        self.epochs = offset + (next(iter(self.parts.values()))[0].shape[-1] if self.parts else 0)

    def add(self, chunk) -> None:  # a jaxnn._loop.Chunk
        keep = chunk.ran if chunk.ran.ndim == 1 else chunk.ran.any(axis=0)  # epochs some model ran
        for k, v in chunk.records.items():
            self.parts.setdefault(k, []).append(v[..., keep])
        self.epochs += int(keep.sum())

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.concatenate(v, axis=-1) for k, v in self.parts.items()}
        out["epoch"] = np.arange(self.offset + 1, self.epochs + 1)
        return out

    def latest(self, name: str) -> float:
        return float(np.nanmin(self.parts[name][-1][..., -1]))


def train(run) -> tuple:
    """Trains a ``jaxnn._setup.Run`` (entered) to its end: ``(carry, stop codes on
    the host, history)``."""
    carry, data, history, progress = run.begin()
    runner = run.runner(history, progress)
    carry, stop = drive(
        runner,
        carry,
        data,
        epochs=run.epochs,
        history=history,
        progress=run.progress,
        saver=run.saver,
        log=run.log,
    )
    return carry, stop, history


def drive(run, carry, data, *, epochs: int, history: History, progress: bool, saver=None, log=None):
    """Trains through the runner ``run`` (the ``jaxnn._loop.Runner`` protocol), chunk
    by chunk, with a progress bar, checkpoints and TensorBoard logs
    (``jaxnn._logs.EpochLog``). Returns the final carry and its ``stop`` codes on the
    host (read with the last chunk: no extra sync)."""
    bar = progress_bar(epochs, history.epochs) if progress else None
    stop = None
    for chunk in run.chunks(carry, data, epochs, history.epochs):
        carry, stop = chunk.carry, chunk.stop
        before = history.epochs
        history.add(chunk)
        if log is not None:
            log.add({k: v[-1] for k, v in history.parts.items()}, before + 1)
        if bar is not None:
            bar.update(history.epochs - before)
            bar.set_postfix(
                {k: f"{history.latest(k):.4g}" for k in ("loss", "val_loss") if k in history.parts}
            )
        # nothing worth resuming
        if saver is not None and not (chunk.stop == Stop.NON_FINITE_PARAMS).any():
            saver.after_chunk(
                carry, history.epochs, history.arrays(), bool((chunk.stop != Stop.COMPLETED).all())
            )
    if bar is not None:
        bar.close()
    return carry, np.asarray(fetch(carry.stop) if stop is None else stop)


def progress_bar(total: int, initial: int, unit: str = "epoch"):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(initial, total), unit=unit)


def finish(early, carry, stops: np.ndarray) -> Any:
    """The params of a finished run: the best epoch's where ``early.restore_best``
    found one. ``stops``: the Stop codes on the host, shape () or (K,).

    Raises:
      ValueError: a model's initial params were not finite.
    """
    params = carry.state.variables
    if (bad := np.flatnonzero(stops == Stop.NON_FINITE_PARAMS)).size:
        raise _models.non_finite_params_error(
            jax.tree.map(lambda p: p[bad[0]], params) if stops.ndim else params
        )
    if early is not None and early.restore_best:
        has_best = np.isfinite(np.asarray(fetch(carry.best)))
        pick = lambda b, p: jnp.where(
            has_best.reshape(has_best.shape + (1,) * (p.ndim - has_best.ndim)), b, p
        )
        params = jax.tree.map(pick, carry.best_params, params)
    return params


def stop_message(early, stop: int, stop_step: int, n_batches: int, learning_rate) -> str:
    """A sentence about why a model stopped, or ``""``."""
    if stop == Stop.EARLY_STOPPING:
        return (
            f"early stopping: {early.monitor} did not improve by more than "
            f"{early.min_delta} for {early.patience} epochs"
        )
    if stop == Stop.NON_FINITE_LOSS:
        lr = f" ({learning_rate})" if learning_rate is not None else ""
        return (
            f"the loss became non-finite (NaN or inf) at epoch {stop_step // n_batches + 1}, step {stop_step}; "
            f"training stopped and kept the parameters from the last finite step. "
            f"The usual cause is a learning rate{lr} that is too large: try a smaller one."
        )
    return ""


def warn(message: str) -> None:
    """A RuntimeWarning at the user's line: the one that called ``fit`` or ``fit_many``."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
