"""TensorBoard event files written during a run (private; ``jaxnn.logs`` reads them back)."""

import itertools
import os
import socket
import time
from pathlib import Path

import numpy as np

from jaxnn import _files
from jaxnn._checks import install_hint

INSTALL = f"TensorBoard logs need the tensorboard package: {install_hint('tensorboard')}"


def tb():
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        raise ImportError(INSTALL) from None
    return Event, Summary, hp, RecordWriter


_FILES = itertools.count()  # event files this process made (their names must differ)


class _EventFile:
    """One event file, written in the caller's thread (tensorboard's ``RecordWriter``
    framing): a full disk or a file-size limit raises here, as an ``OSError`` naming
    the file, not in a writer thread that prints a traceback and drops the events.
    The file is created exclusively (never through a planted link)."""

    def __init__(self, folder: Path, event_type, record_writer):
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILES)}"
        self.path = folder / name
        try:
            self._records = record_writer(_Unbuffered(self.path))
        except OSError as e:
            raise _files.named_error(e, self.path) from e
        try:
            self.add(event_type(wall_time=time.time(), file_version="brain.Event:2"))
        except OSError:
            self.close()
            raise

    def add(self, event) -> None:
        self._guard(self._records.write, event.SerializeToString())

    def flush(self) -> None:
        self._guard(self._records.flush)

    def close(self) -> None:
        self._records.close()

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except OSError as e:
            raise _files.named_error(e, self.path) from e


class _Unbuffered:
    """A file written record by record with ``os.write`` (short writes continued): no
    buffer is left behind to flush, and fail again, after a write failed."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self.closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def check_log_dir(log_dir) -> Path | None:
    """``log_dir`` as a Path (``None`` stays ``None``); raises unless the package is
    installed and the path is a folder path. Nothing is created here."""
    if log_dir is None:
        return None
    if not isinstance(log_dir, str | os.PathLike):
        raise TypeError(f"log_dir must be a folder path, got {log_dir!r}")
    tb()
    return Path(log_dir)


def _hparam_value(value):
    """A value the HParams plugin takes: a bool, a number or a string."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | np.number):
        return float(value)
    return str(value)


class EpochLog:
    """Event files for one run, or one per model of a sweep (``models=K``).

    Args:
      folder: the log folder (created, with its parents).
      hparams: the run's hyperparameters; with ``models``, values may be sequences of
        K (one per model).
      models: ``None`` for one run; K for ``fit_many`` (``jaxnn.search``: its trials).
      metrics: the history names, listed in the HParams view's columns.
      run: the runs' names with ``models``: ``<run>-000``, ...
    """

    def __init__(
        self,
        folder: Path,
        hparams: dict,
        metrics: list[str],
        models: int | None = None,
        run: str = "model",
    ):
        Event, Summary, hp, RecordWriter = tb()
        self._event, self._summary = Event, Summary
        runs = [folder] if models is None else [folder / f"{run}-{i:03d}" for i in range(models)]
        for run in runs:
            _files.make_folder(run, "log_dir")
        self.writers = []
        try:
            self._begin(runs, folder, hparams, metrics, models, RecordWriter, hp)
        except BaseException:
            self.close()  # a file that failed is closed already; close the others
            raise
        self.learning_rates = np.broadcast_to(
            np.asarray(hparams.get("learning_rate", np.nan), np.float64), (len(self.writers),)
        )
        self.last = time.perf_counter()

    def _begin(
        self, runs, folder: Path, hparams: dict, metrics: list[str], models, RecordWriter, hp
    ) -> None:
        """An event file per run, with its hyperparameters (and a sweep's columns in the
        folder above its runs)."""
        Event = self._event
        for run in runs:
            self.writers.append(_EventFile(run, Event, RecordWriter))
        now = time.time()
        tags = [*metrics, "learning_rate", "epoch_seconds"]
        if models is not None:  # the sweep's columns, in the folder above its runs
            top = _EventFile(folder, Event, RecordWriter)
            names = {name: hp.HParam(name) for name in hparams}
            config = hp.hparams_config_pb(list(names.values()), [hp.Metric(tag) for tag in tags])
            try:
                top.add(Event(wall_time=now, summary=config))
            finally:
                top.close()
        for i, writer in enumerate(self.writers):
            mine = {
                k: _hparam_value(v if models is None or np.ndim(v) == 0 else v[i])
                for k, v in hparams.items()
            }
            writer.add(Event(wall_time=now, summary=hp.hparams_pb(mine, trial_id=runs[i].name)))
            writer.flush()

    def add(self, records: dict[str, np.ndarray], first_epoch: int) -> None:
        """Writes the epochs ``first_epoch, ...`` of ``records`` (``name -> (..., E)``;
        with models, NaN where a model did not run)."""
        now, wall = time.perf_counter(), time.time()
        # (runs, E)
        records = {k: np.asarray(v).reshape(len(self.writers), -1) for k, v in records.items()}
        span = next(iter(records.values())).shape[1]
        seconds, self.last = (now - self.last) / max(span, 1), now
        for i, writer in enumerate(self.writers):
            for j in range(span):
                values = {k: float(v[i, j]) for k, v in records.items()}
                if len(self.writers) > 1 and np.isnan(
                    values.get("loss", next(iter(values.values())))
                ):
                    continue  # this model had stopped
                values["epoch_seconds"] = seconds
                if np.isfinite(self.learning_rates[i]):
                    values["learning_rate"] = float(self.learning_rates[i])
                items = [self._summary.Value(tag=k, simple_value=v) for k, v in values.items()]
                step = first_epoch + j
                writer.add(
                    self._event(wall_time=wall, step=step, summary=self._summary(value=items))
                )
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
