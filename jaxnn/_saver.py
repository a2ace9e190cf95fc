"""A run's checkpoints (private): the :class:`Saver` that writes a run's folder, run
ids, restoring the loop state, and the rules for resuming a run (what a resumed run
keeps from its checkpoint and what it takes from the call). The file format is
``jaxnn.checkpoint``'s; folders, locks and atomic writes are ``jaxnn._files``'.
"""

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _driver, _files, _models, checkpoint
from jaxnn._checks import MAX_EPOCHS
from jaxnn.distributed import fetch
from jaxnn.options import FitResult, TrainState


class Saver:
    """The writer of a run's checkpoint folder, for ``fit``, ``fit_many`` and
    ``search``: ``fit`` saves its loop state every ``every`` epochs (and at the end)
    into ``epoch-NNNNNNNNNN.jaxnn``, a search its whole state after every chunk into
    ``search-NNNNNNNNNN.jaxnn`` (``unit="chunk"``: the position counts chunks); each
    keeps the newest ``keep`` of this run.

    Entering it (before anything compiles) creates the folder, takes its lock (a second
    writer gets ``FolderInUseError``) and claims it: files of another run, files of
    this run past the epoch it resumes from, and files that are not readable
    checkpoints raise ``CheckpointError`` unless ``overwrite`` (then they are deleted).
    Clean-up deletes only this run's files, oldest epoch first. In a multi-process run
    every process has one (a save gathers what the processes split, a collective) and
    process 0 writes.
    """

    def __init__(
        self, checkpoints, epochs: int, metadata: dict, run_id: str, resumed=(0, 0), unit="epoch"
    ):
        self.folder, self.epochs, self.unit = Path(checkpoints.dir), epochs, unit
        self.every, self.keep, self.overwrite = (
            checkpoints.every or epochs,
            checkpoints.keep,
            checkpoints.overwrite,
        )
        self.every_steps = checkpoints.every_steps
        self.metadata = {**metadata, "config": checkpoints.metadata or {}, "run_id": run_id}
        self.run_id, self.resumed = run_id, tuple(resumed)
        self.files: list[tuple[tuple[int, int], Path]] = []  # this run's, oldest first
        from flax import serialization  # noqa: F401  (imported now, not at the first save: a Ctrl-C could land in it)

        self._lock = None
        self.writer = jax.process_index() == 0

    def __enter__(self) -> "Saver":
        if not self.writer:
            return self
        _files.make_folder(self.folder, "checkpoints.dir")
        self._lock = _files.lock_folder(self.folder)
        try:
            self._claim()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _claim(self) -> None:
        theirs = {}
        for path, meta, why in checkpoint.scan(self.folder):
            if (
                meta is not None
                and meta.get("run_id") == self.run_id
                and _files.position(meta) <= self.resumed
            ):
                self.files.append((_files.position(meta), path))
            elif meta is None:
                theirs[path] = f"{path.name} (not a readable checkpoint: {why})"
            elif meta.get("run_id") == self.run_id:
                at = f"{self.unit} {self.resumed[0]}" + (
                    f" step {self.resumed[1]}" if self.resumed[1] else ""
                )
                theirs[path] = f"{path.name} (this run's {_where(meta)}, past {at})"
            else:
                theirs[path] = f"{path.name} (run {meta.get('run_id')}, {_where(meta)})"
        if theirs and not self.overwrite:
            names = list(theirs.values())
            raise checkpoint.CheckpointError(
                f"{self.folder} holds checkpoints this run must not mix with: {', '.join(names[:3])}"
                f"{' ...' if len(names) > 3 else ''}. Resume that run (resume=<folder>), write into "
                "another folder, or pass Checkpoints(..., overwrite=True) to delete them"
            )
        # theirs, and what a killed writer left
        for path in [*theirs, *self.folder.glob(f".*{checkpoint.SUFFIX}.*.tmp")]:
            path.unlink()
        self.files.sort()

    def after_chunk(self, carry, epoch: int, history: dict, stopped: bool) -> None:
        if epoch % self.every and epoch < self.epochs and not stopped:
            return
        self.save(carry, (epoch, 0), history)

    def within_epoch(
        self, progress, epoch: int, step: int, steps_before: int, history: dict
    ) -> None:
        """A streamed fit's save after ``step`` updates of the epoch after ``epoch``
        (``steps_before`` at the chunk before): when it passed a multiple of
        ``every_steps``. ``progress``: ``{"carry", "start", "losses"}``."""
        if self.every_steps and step // self.every_steps > steps_before // self.every_steps:
            self.save(progress, (epoch, step), history)

    def save(self, tree, position: tuple[int, int], history: dict) -> None:
        """Saves ``tree`` at ``position`` (``(epochs, steps)``, or ``(chunks, 0)``),
        then deletes this run's files past the newest ``keep``. Called on every process
        (what the processes split is gathered); process 0 writes, and the others wait
        until it has."""
        if jax.process_count() > 1:
            tree = fetch(tree)
        if self.writer:
            self._write(tree, position, history)
        if jax.process_count() > 1:  # every process sees the file when it goes on
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxnn checkpoint")

    def _write(self, tree, position: tuple[int, int], history: dict) -> None:
        records = {k: np.asarray(v).tolist() for k, v in history.items() if k != "epoch"}
        at, step = position
        name = ("search" if self.unit == "chunk" else "epoch") + f"-{at:010d}"
        path = self.folder / f"{name}{f'-step-{step:010d}' if step else ''}{checkpoint.SUFFIX}"
        checkpoint.save(
            path, tree, metadata={**self.metadata, "epoch": at, "step": step, "history": records}
        )
        self.files = sorted({*self.files, (position, path)})
        for _, old in self.files[: -self.keep]:
            old.unlink(missing_ok=True)
        self.files = self.files[-self.keep :]


def _where(meta: dict) -> str:
    """How far a checkpoint is, in its own unit (a search's counts chunks)."""
    epoch, step = _files.position(meta)
    return f"{'chunk' if 'search' in meta else 'epoch'} {epoch}" + (f" step {step}" if step else "")


def restore_carry(path, template):
    """Restores the loop state of ``fit`` or ``fit_many`` from a checkpoint file;
    returns ``(carry, history, progress)``: ``progress`` is ``None``, or for a
    streamed fit's file saved within an epoch ``(start, losses, step)``: the epoch's
    first state, the losses of its first ``step`` updates (the carry's state is after them).
    ``history`` is a ``jaxnn._driver.History`` of the stored records, ending at the
    state's epoch (a run resumed from a ``FitResult`` records only its own epochs).

    Raises:
      CheckpointError: as ``checkpoint.restore``, or the stored history is not one
        record per epoch of the restored state (per model with ``fit_many``).
    """
    step = checkpoint.read_metadata(path).get("step", 0)
    if not step:
        carry, meta = checkpoint.restore(path, template)
        progress = None
    else:
        tree = {"carry": template, "start": template.state, "losses": np.zeros(step, np.float32)}
        tree, meta = checkpoint.restore(path, tree)
        carry, progress = tree["carry"], (tree["start"], tree["losses"], step)
    history = meta.get("history", {})
    epochs = np.asarray(carry.state.epoch)
    at, models = int(epochs.max()), epochs.shape
    for name, values in history.items():
        got = np.shape(values)
        if got[:-1] != models or len(got) != len(models) + 1 or got[-1] > at:
            raise checkpoint.CheckpointError(
                f"{path}: metadata.history.{name} has shape {got}; a state at epoch {at} holds at most one record "
                f"per epoch{' per model, ' + str(models[0]) + ' models' if models else ''}"
            )
    recorded = max((np.shape(v)[-1] for v in history.values()), default=0)
    return carry, _driver.History(history, offset=at - recorded), progress


def checkpointing(checkpoints, resume_path, settings: dict, *, epochs: int, spec):
    """``(file, saver, epoch)``: the checkpoint file a run resumes from (or ``None``),
    the :class:`Saver` of its checkpoints (or ``None``) and the checkpoint's epoch (0
    without one), checked against this call before anything compiles. The rules for a
    resumed run (``fit``'s docstring): its state comes from the checkpoint; ``epochs``,
    the optimizer's hyperparameters, the data and every speed setting from the call;
    the ``settings`` (loss, optimizer, recorded metrics, early stopping) must be the
    checkpoint's (refused otherwise)."""
    # the common call: no work on fit's per-call path
    if checkpoints is None and resume_path is None:
        return None, None, 0
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
    metadata = {"spec": spec, "settings": settings}
    return saver_from(checkpoints, file, meta, metadata, epochs, checkpoint.new_run_id)


def saver_from(checkpoints, file, meta: dict, metadata: dict, epochs: int, new_id, unit="epoch"):
    """``(file, saver, done)`` for a run resuming from ``file`` (metadata ``meta``;
    ``None`` and ``{}`` for a new run): it keeps the file's run id (a differing
    ``checkpoints.run_id`` is refused), else takes ``checkpoints.run_id`` or
    ``new_id()``."""
    if file is not None and checkpoints is not None:
        if checkpoints.run_id not in (None, meta.get("run_id")):
            raise ValueError(
                f"resume: {file} belongs to run {meta.get('run_id')}, not checkpoints.run_id"
            )
    done = meta.get("epoch", 0)
    if checkpoints is None:
        return file, None, done
    run_id = meta.get("run_id") or checkpoints.run_id or new_id()
    resumed = (done, meta.get("step", 0))
    return file, Saver(checkpoints, epochs, metadata, run_id, resumed, unit), done


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
        raise TypeError(
            f"resume must be a checkpoint path, a FitResult or a TrainState, got {type(resume).__name__}"
        )
    shapes = lambda tree: (jax.tree.structure(tree), [jnp.shape(a) for a in jax.tree.leaves(tree)])
    if shapes(resume.variables) != shapes(fresh.variables):
        raise ValueError(
            "resume's params do not have the structure and shapes of params (the model's)"
        )
    check_opt_state(tx, resume.params, resume.opt_state)
    for name in ("step", "epoch"):
        value = np.asarray(getattr(resume, name))
        if (
            value.shape != ()
            or not np.issubdtype(value.dtype, np.integer)
            or not 0 <= value <= MAX_EPOCHS
        ):
            raise ValueError(
                f"resume.{name} must be a non-negative int32 scalar, got {getattr(resume, name)!r}"
            )
    return resume._replace(key=_models.check_key(resume.key)), None


def check_opt_state(tx, params, opt_state) -> None:
    """Raises unless ``opt_state`` has the structure, shapes and dtypes ``tx.init(params)`` would."""
    want = opt_state_shapes(tx, params)
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), opt_state)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(
        want
    ) != jax.tree.leaves(got):
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
    kind = lambda a: (
        type(a),
        np.shape(a),
        getattr(a, "dtype", None),
        getattr(a, "weak_type", None),
    )
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
