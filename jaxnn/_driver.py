"""The host side of training, shared by ``fit``, ``fit_many`` and ``search`` (private).

:func:`drive` is the one host loop: the plain Python around the compiled chunks,
showing each chunk to what a run wants observed (its history, log and checkpoints)
and to the progress bar. :func:`train` drives a checked run (``jaxnn._setup.Run``)
through its runner (the ``jaxnn._loop.Runner`` protocol: one small record per
compiled chunk, nothing per step); ``jaxnn.tune`` drives the search's chunks.
:func:`finish` turns the final carry into params (the best epoch's where early
stopping kept them), for one model or a stacked axis of models alike, and
:func:`stop_message` says why a model stopped. This module compiles nothing.
"""

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

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
        self.first = self.epochs + 1
        self.epochs += int(keep.sum())

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.concatenate(v, axis=-1) for k, v in self.parts.items()}
        out["epoch"] = np.arange(self.offset + 1, self.epochs + 1)
        return out

    def added(self) -> tuple[dict, int]:
        """The last chunk's records and the epoch they start at."""
        return {k: v[-1] for k, v in self.parts.items()}, self.first

    def latest(self, name: str) -> float:
        return float(np.nanmin(self.parts[name][-1][..., -1]))


class Bar(NamedTuple):
    """What a run shows in its progress bar: ``total`` units of ``unit`` from
    ``initial``; after each chunk ``at(chunk)`` (where the run stands) and
    ``text(chunk)`` (the figures beside the bar)."""

    total: int
    initial: int
    unit: str
    at: Callable[[Any], int]
    text: Callable[[Any], dict]


def drive(chunks: Iterable, observers: Sequence[Callable] = (), bar: Bar | None = None):
    """The one host loop of ``fit``, ``fit_many``, the streamed fit and ``search``:
    goes through ``chunks`` (one per compiled call), shows each to the ``observers``
    in order (a history, a TensorBoard log, a saver: callables of the chunk), then
    to the progress bar (in process 0). Returns the last chunk (``None`` if none)."""
    shown = None
    if bar is not None and jax.process_index() == 0:
        from tqdm.auto import tqdm

        shown = tqdm(total=bar.total, initial=min(bar.initial, bar.total), unit=bar.unit)
    last = None
    try:
        for last in chunks:
            for observe in observers:
                observe(last)
            if shown is not None:
                shown.update(bar.at(last) - shown.n)
                shown.set_postfix(bar.text(last))
    finally:
        if shown is not None:
            shown.close()
    return last


def train(run) -> tuple:
    """Trains a ``jaxnn._setup.Run`` (entered) to its end through its runner (the
    ``jaxnn._loop.Runner`` protocol): ``(carry, stop codes on the host, history)``.
    Observed after each chunk: the history, the TensorBoard log (``jaxnn._logs.EpochLog``)
    and the checkpoints (``jaxnn._saver.Saver``)."""
    carry, data, history, progress = run.begin()
    observers = [history.add]
    if run.log is not None:
        observers.append(lambda chunk: run.log.add(*history.added()))
    if run.saver is not None:

        def save(chunk):
            if not (chunk.stop == Stop.NON_FINITE_PARAMS).any():  # nothing worth resuming
                stopped = bool((chunk.stop != Stop.COMPLETED).all())
                run.saver.after_chunk(chunk.carry, history.epochs, history.arrays(), stopped)

        observers.append(save)
    bar = None
    if run.progress:
        text = lambda chunk: {
            k: f"{history.latest(k):.4g}" for k in ("loss", "val_loss") if k in history.parts
        }
        bar = Bar(run.epochs, history.epochs, "epoch", lambda chunk: history.epochs, text)
    chunks = run.runner(history, progress).chunks(carry, data, run.epochs, history.epochs)
    last = drive(chunks, observers, bar)
    if last is None:  # nothing left to train
        return carry, np.asarray(fetch(carry.stop)), history
    return last.carry, np.asarray(last.stop), history


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
