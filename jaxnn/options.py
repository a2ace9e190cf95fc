"""The values that go into and come out of ``fit``, ``fit_many`` and ``search``.

Options are small frozen values (``EarlyStopping``, ``Checkpoints``, ``Tuning``) that
check themselves when they are made: an invalid one cannot be written, and the error
points at the line that wrote it. Results are ``TrainState`` (what a step changes),
``FitResult``, ``ManyResult`` and the ``Stop`` reason. This module defines data only:
it does not train.
"""

import dataclasses
import enum
import json
import os
from typing import Any, Literal, NamedTuple

import jax
import numpy as np

from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn._precision import resolve_compute_dtype
from jaxnn.metrics import higher_is_better


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree.

    Attributes:
      params: the model's parameters.
      opt_state: the optimizer's state.
      step: shape=(), int32: updates applied so far.
      epoch: shape=(), int32: epochs completed so far.
      key: shape=(), PRNG key: the run's root key (fixed; epochs fold into it).
      model_state: the model's state besides its parameters (Flax's other variable
        collections, e.g. ``{"batch_stats": ...}``), updated by every training step;
        ``None`` for a model whose variables are its params.
    """

    params: Any
    opt_state: Any
    step: jax.Array
    epoch: jax.Array
    key: jax.Array
    model_state: Any = None

    @property
    def variables(self):
        """What the model's ``apply`` takes: ``params``, or ``{"params": params,
        **model_state}`` for a model with state."""
        return (
            self.params if self.model_state is None else {"params": self.params, **self.model_state}
        )


class Stop(enum.IntEnum):
    """Why training ended; the values are the codes the compiled loop records."""

    COMPLETED = 0  # every epoch asked for ran
    EARLY_STOPPING = 1  # the monitored value stopped improving
    NON_FINITE_LOSS = 2  # the loss became NaN or inf; the last finite params are kept (that
    # epoch's validation values come from the params that diverged, before the rewind)
    NON_FINITE_PARAMS = 3  # the initial params were not finite: fit raises instead

    def __str__(self) -> str:
        return self.name


class TrialStatus(enum.IntEnum):
    """Where a search's trial stands; the values are the codes the compiled search
    records, and a trial's ``status`` in ``SearchResult.trials`` is its lower-case name."""

    PENDING = 0  # not started
    RUNNING = 1
    PRUNED = 2  # ranked out at a rung (PBT: replaced by a copy of a better member)
    FINISHED = 3  # trained its whole budget
    STOPPED = 4  # its own early stopping fired
    NAN = 5  # its loss went non-finite

    def __str__(self) -> str:
        return self.name.lower()


def _final(history: dict) -> str:
    last = {
        k: v[..., -1]
        for k, v in history.items()
        if k != "epoch" and np.shape(v)[-1:] not in ((0,),)
    }
    return ", ".join(
        f"{k}={float(np.nanmin(v)) if np.ndim(v) else float(v):.4g}" for k, v in last.items()
    )


def _shapes(tree) -> str:
    return str(jax.tree.map(lambda a: tuple(np.shape(a)), tree))


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params: the trained parameters (the best epoch's with ``restore_best``).
      state: the final :class:`TrainState` (pass it as ``fit(..., resume=...)`` to go on).
      history: per-epoch numpy arrays: ``loss`` (mean training loss), ``val_loss``
        when there is validation data, one entry per metric (``val_<name>`` on
        validation data, ``<name>`` on training data otherwise), and ``epoch``.
      epochs_run: the epoch count of ``state`` (fewer than asked after a stop).
      stop_reason: a :class:`Stop`.
      message: a sentence about the stop, or ``""``.
    """

    params: Any
    state: TrainState
    history: dict[str, np.ndarray]
    epochs_run: int
    stop_reason: Stop = Stop.COMPLETED
    message: str = ""

    def __repr__(self) -> str:  # a summary: the arrays are a print away
        return (
            f"FitResult(epochs_run={self.epochs_run}, stop_reason={self.stop_reason}, "
            f"final: {_final(self.history)}; params {_shapes(self.params)})"
        )


class ManyResult(NamedTuple):
    """What ``fit_many`` returns.

    Attributes:
      params: the K models' parameters, stacked on a leading axis of size K.
      state: the final stacked ``TrainState`` (pass it as ``fit_many(..., resume=...)``).
      history: per-epoch arrays of shape ``(K, epochs)``, NaN after a model stopped.
      epochs_run: shape ``(K,)``.
      stop_reasons: one :class:`Stop` per model.
      hyperparams: the values per model, ``{name: array of shape (K,)}``.
      table: one dict per model (index, hyperparameters, final metrics), best first
        by ``monitor``.
      monitor: the history entry the table is sorted by.
    """

    params: Any
    state: TrainState
    history: dict[str, np.ndarray]
    epochs_run: np.ndarray
    stop_reasons: list
    hyperparams: dict[str, np.ndarray]
    table: list[dict]
    monitor: str

    def __repr__(self) -> str:
        best = self.table[0] if self.table else {}
        return (
            f"ManyResult({len(self.stop_reasons)} models, epochs_run {np.min(self.epochs_run)}-"
            f"{np.max(self.epochs_run)}, best: model {best.get('model')} with {self.monitor}="
            f"{best.get(self.monitor, float('nan')):.4g}; params {_shapes(self.params)})"
        )


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What ``jaxnn.search`` returns.

    Attributes:
      best_config: the winner's values, ``{name: value}`` (``None`` when no trial
        finished: every one diverged or stopped).
      best_params: the winner's trained params (refit on every row of ``x`` unless
        ``refit=False``), for the model given: a narrower winner of a width search
        is zero-padded to it, and predicts the same; a depth search's keeps the
        layers past the winner's depth as drawn (``best_model()`` is the winner).
      trials: one dict per trial, finished ones first, best first: ``id``, ``config``,
        ``rung`` (the last rung it was ranked at, -1: none), ``epochs`` trained,
        ``score`` (its best monitored value; PBT: its last), ``status`` (``finished``,
        ``pruned``, ``stopped``, ``nan``, ``pending``) and ``parent`` (PBT: the
        trial it copied, -1: none).
      curves: ``(trials, max_epochs)``: the monitored value after each epoch (NaN
        where the trial did not train; a PBT copy starts with its parent's curve).
      monitor: the name of the value ranked.
      fold_curves: with ``cv``, ``(trials, max_epochs, folds)``: each fold's
        monitored value after each epoch (``curves`` is their mean); else ``None``.
      host: what the search cost the host while it trained: ``{"chunks": compiled
        calls, "reads": values read back}`` (three per chunk: the slots live, the
        rung, the trials decided; nothing per step or per trial).
    """

    best_config: dict | None
    best_params: Any
    trials: list
    curves: np.ndarray
    monitor: str
    replay_keywords: Any = dataclasses.field(repr=False, default=None)
    host: dict = dataclasses.field(repr=False, default_factory=dict)
    fold_curves: np.ndarray | None = dataclasses.field(repr=False, default=None)

    def replay(self, i: int) -> dict:
        """The keywords of ``jaxnn.fit`` that retrain trial ``i`` alone, from its own
        key: ``jaxnn.fit(**result.replay(i))`` ends with its params (bitwise on jax
        0.10's CPU backend with two or more slots; to float rounding with one slot, whose
        program XLA simplifies otherwise, and where a backend rounds a vmapped matrix
        product apart from a single one, as jax 0.12's CPU does)."""
        if (
            isinstance(i, bool)
            or not isinstance(i, int | np.integer)
            or not 0 <= i < len(self.trials)
        ):
            raise ValueError(f"trial id must be an int in [0, {len(self.trials)}), got {i!r}")
        return self.replay_keywords(int(i))

    def best_model(self) -> tuple:
        """``(model, params)``: the winner as its own network. A width search trains the
        model given (the widest) with the units past each trial's width masked; this
        is the winner's narrower ``jaxnn.mlp`` (with its dropout rate) and
        ``best_params`` cut to it, which predicts the same; a depth search's winner
        is the ``jaxnn.mlp`` of its first hidden layers and the output layer; an
        activation search's winner is the ``jaxnn.mlp`` of its activation. Otherwise the model given and
        ``best_params``."""
        if self.best_config is None:
            raise ValueError("no trial finished (every one diverged or stopped): no best model")
        return self.replay_keywords.own(self.best_config, self.best_params)

    def __repr__(self) -> str:
        counts: dict = {}
        for row in self.trials:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        status = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        shown = {
            k: float(f"{v:.4g}") if isinstance(v, float) else v
            for k, v in (self.best_config or {}).items()
        }
        best = (
            f"best {self.monitor}={self.trials[0]['score']:.4g} with {shown}"
            if self.best_config
            else ""
        )
        return f"SearchResult({len(self.trials)} trials: {status}; {best or 'none finished'})"


def _check(condition: bool, error: type, message: str) -> None:
    if not condition:
        raise error(message)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is ``"loss"``, ``"val_loss"`` or a metric's history name (e.g.
    ``"val_accuracy"``); ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for
    accuracy and r2, min otherwise; resolved when the value is made).
    ``restore_best`` returns the best epoch's params. The decision is made inside the
    compiled loop, so fusing epochs never overshoots.

    ``best``: which values become the best one that later epochs must beat by
    ``min_delta``: ``"significant"`` (Keras's rule: only improvements by more than
    ``min_delta``, so slow steady progress adds up) or ``"any"`` (scikit-learn's rule:
    every improvement, so each epoch must beat the best so far by ``min_delta``).

    ``reduce_lr``: a factor in (0, 1), or ``None``. When patience runs out, the
    learning rate held in the optimizer state (a named optimizer's) is multiplied by
    it and the wait starts again; the run stops once patience runs out with the rate
    at or below ``min_lr`` (scikit-learn's ``learning_rate="adaptive"``: 0.2 and 1e-6).
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: Literal["min", "max", "auto"] = "auto"
    restore_best: bool = True
    best: Literal["significant", "any"] = "significant"
    reduce_lr: float | None = None
    min_lr: float = 0.0

    def __post_init__(self):
        _check(
            isinstance(self.monitor, str),
            TypeError,
            f"early_stopping.monitor must be a name, got {self.monitor!r}",
        )
        positive_int(self.patience, "early_stopping.patience", MAX_EPOCHS)
        _check(
            _is_number(self.min_delta) and self.min_delta >= 0,
            ValueError,
            f"early_stopping.min_delta must be a number >= 0, got {self.min_delta!r}",
        )
        _check(
            self.mode in ("min", "max", "auto"),
            ValueError,
            f"early_stopping.mode must be 'min', 'max' or 'auto', got {self.mode!r}",
        )
        _check(
            isinstance(self.restore_best, bool),
            TypeError,
            f"early_stopping.restore_best must be True or False, got {self.restore_best!r}",
        )
        _check(
            self.best in ("significant", "any"),
            ValueError,
            f"early_stopping.best must be 'significant' or 'any', got {self.best!r}",
        )
        _check(
            self.reduce_lr is None or (_is_number(self.reduce_lr) and 0 < self.reduce_lr < 1),
            ValueError,
            f"early_stopping.reduce_lr must be None or a factor in (0, 1), got {self.reduce_lr!r}",
        )
        _check(
            _is_number(self.min_lr) and self.min_lr >= 0,
            ValueError,
            f"early_stopping.min_lr must be a number >= 0, got {self.min_lr!r}",
        )
        if self.mode == "auto":
            object.__setattr__(self, "mode", "max" if higher_is_better(self.monitor) else "min")


METADATA_BYTES = 1 << 20  # a checkpoint header holds it; readers take 64 MiB in all


@dataclasses.dataclass(frozen=True)
class Checkpoints:
    """Save the whole loop state into ``dir`` every ``every`` epochs and at the end,
    keeping the newest ``keep`` files; ``metadata`` (JSON-able) is stored in each.

    ``every=None`` saves at the end only. Resume with ``fit(..., resume=dir)``.

    The folder belongs to one run while it trains (an OS lock: a second writer gets
    ``FolderInUseError``). Every file records the run's id: a new run into a folder
    holding another run's checkpoints (or this run's past the epoch it resumes from)
    is refused before training unless ``overwrite=True``, which deletes them.
    ``run_id``: the id of a new run (default: a random one); a resumed run keeps its
    checkpoint's, and a ``run_id`` that differs from it is refused.

    ``every_steps``: a fit that streams ``x`` from disk (long epochs) also saves every
    ``every_steps`` updates within an epoch, at the end of the chunk of steps that
    reaches it (``epoch-E-step-S.jaxnn``, with the epoch's progress); resumed, it goes
    on from that step, bit for bit as if never stopped.
    """

    dir: str | os.PathLike
    every: int | None = None
    keep: int = 3
    metadata: dict | None = None
    overwrite: bool = False
    run_id: str | None = None
    every_steps: int | None = None

    def __post_init__(self):
        _check(
            isinstance(self.dir, str | os.PathLike),
            TypeError,
            f"checkpoints.dir must be a folder path, got {self.dir!r}",
        )
        _check(
            os.fspath(self.dir) != "",
            ValueError,
            "checkpoints.dir is empty; expected a folder path (use '.' for the current folder)",
        )
        if self.every is not None:
            positive_int(self.every, "checkpoints.every")
        if self.every_steps is not None:
            positive_int(self.every_steps, "checkpoints.every_steps")
        positive_int(self.keep, "checkpoints.keep")
        _check(
            isinstance(self.overwrite, bool),
            TypeError,
            f"checkpoints.overwrite must be True or False, got {self.overwrite!r}",
        )
        _check(
            self.run_id is None or (isinstance(self.run_id, str) and self.run_id.isalnum()),
            ValueError,
            f"checkpoints.run_id must be letters and digits, got {self.run_id!r}",
        )
        if self.metadata is not None:
            _check(
                isinstance(self.metadata, dict),
                TypeError,
                f"checkpoints.metadata must be a dict, got {type(self.metadata).__name__}",
            )
            try:
                size = len(json.dumps(self.metadata, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise TypeError(f"checkpoints.metadata must be JSON-serialisable: {e}") from None
            _check(
                size <= METADATA_BYTES,
                ValueError,
                f"checkpoints.metadata is {size} bytes as JSON; at most {METADATA_BYTES} "
                "(it is stored in every checkpoint's header, which readers bound)",
            )


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Speed and memory knobs; the defaults suit most runs.

    ``epochs_per_call``: epochs fused into one
    compiled call (default: about a tenth of the epochs left with a progress bar, all
    of them without, as a power of two up to 1024). ``unroll``: batches per iteration
    of the compiled scan (default from the model's size). ``eval_batch_size``: rows per
    chunk when computing validation loss and metrics. ``drop_remainder``: skip the last
    partial batch of each epoch instead of padding and masking it (every step full, as
    a hand-written scan over whole batches). ``gather``: ``"step"`` gathers each batch's
    rows as the step needs them; ``"epoch"`` gathers the whole epoch's rows once, in
    batch order (one more copy of the training data in device memory). The two train
    bitwise alike; neither was consistently faster on an H200, an H100 or the CPU, so
    the default costs no memory. ``compute_dtype``: the precision of the forward and
    backward pass (see ``jaxnn.precision``): ``"auto"`` (bfloat16 on TPU, float32
    elsewhere), ``"float32"``, ``"tensorfloat32"``, ``"bfloat16"`` or ``"float16"``;
    params, optimizer state and loss stay float32.
    """

    epochs_per_call: int | None = None
    unroll: int | None = None
    eval_batch_size: int = 1024
    drop_remainder: bool = False
    gather: Literal["step", "epoch"] = "step"
    compute_dtype: str | None = "auto"

    def __post_init__(self):
        resolve_compute_dtype(self.compute_dtype)
        if self.epochs_per_call is not None:
            positive_int(self.epochs_per_call, "tuning.epochs_per_call", MAX_EPOCHS)
        if self.unroll is not None:
            positive_int(self.unroll, "tuning.unroll")
        positive_int(self.eval_batch_size, "tuning.eval_batch_size")
        _check(
            isinstance(self.drop_remainder, bool),
            TypeError,
            f"tuning.drop_remainder must be a bool, got {self.drop_remainder!r}",
        )
        _check(
            self.gather in ("step", "epoch"),
            ValueError,
            f"tuning.gather must be 'step' or 'epoch', got {self.gather!r}",
        )
