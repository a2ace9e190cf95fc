"""TensorBoard logs of a run: ``fit(..., log_dir=...)``, ``fit_many(..., log_dir=...)``
and every experiment run folder write event files that ``tensorboard --logdir`` reads.

Per epoch: the training loss, the validation loss and metrics (the history's names),
the learning rate when it is a number, and the epoch's wall time (a chunk's time over
its epochs; the first chunk's includes compiling). Once per run: its hyperparameters
(TensorBoard's HParams view). ``fit_many`` writes one run per model
(``model-000``, ...) under ``log_dir`` with that model's swept values, so a sweep is
compared in the HParams view; ``jaxnn.search`` one run per trial (``trial-000``, ...)
with its values, status, rung and parent (PBT's lineage), written when it ends.
Everything is written on the host from the history of each compiled chunk: no
per-step sync, nothing added to the compiled loop. Resuming
into the same folder appends new event files whose epochs continue the run.

The record framing and the protocol buffers are the ``tensorboard`` package's own (an
optional extra: ``pip install 'jaxnn-mlp[tensorboard]'``), written in the caller's thread,
so a full disk is an ``OSError`` naming the event file; :func:`read_scalars` reads a
folder back with the same package.
"""

import os

from jaxnn._logs import INSTALL


def _accumulator(folder):
    """The tensorboard package's reader, loaded with ``folder``'s event files."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ImportError(INSTALL) from None
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def read_scalars(folder: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one run's event files: ``{tag: [(epoch, value), ...]}``, read
    back with the tensorboard package."""
    acc = _accumulator(folder)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_hparams(folder: str | os.PathLike) -> dict:
    """The hyperparameters a run's event files record (the HParams plugin's session start)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = _accumulator(folder).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in info.hparams.items()}
