"""The values that go into and come out of ``fit`` and ``fit_many``.

Options are small immutable values (``EarlyStopping``, ``Checkpoints``, ``Tuning``),
each checked in one place (``jaxnn._plan``) before anything compiles or is written;
results are ``TrainState`` (what a step changes), ``FitResult`` and the ``Stop``
reason. This module defines data only: it does not train.
"""

import enum
import os
from typing import Any, NamedTuple

import jax
import numpy as np


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
        return self.params if self.model_state is None else {"params": self.params, **self.model_state}


class Stop(enum.IntEnum):
    """Why training ended; the values are the codes the compiled loop records."""

    COMPLETED = 0  # every epoch asked for ran
    EARLY_STOPPING = 1  # the monitored value stopped improving
    NON_FINITE_LOSS = 2  # the loss became NaN or inf; the last finite params are kept (that
    # epoch's validation values come from the params that diverged, before the rewind)
    NON_FINITE_PARAMS = 3  # the initial params were not finite: fit raises instead


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


class EarlyStopping(NamedTuple):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor`` is ``"loss"``, ``"val_loss"`` or a metric's history name (e.g.
    ``"val_accuracy"``); ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for
    accuracy and r2, min otherwise). ``restore_best`` returns the best epoch's params.
    The decision is made inside the compiled loop, so fusing epochs never overshoots.

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
    mode: str = "auto"
    restore_best: bool = True
    best: str = "significant"
    reduce_lr: float | None = None
    min_lr: float = 0.0


class Checkpoints(NamedTuple):
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


class Tuning(NamedTuple):
    """Speed and memory knobs; the defaults suit most runs.

    ``epochs_per_call``: epochs fused into one compiled call (default: about a tenth
    of ``epochs`` with a progress bar, all of them without). ``unroll``: batches per
    iteration of the compiled scan (default from the model's size). ``eval_batch_size``:
    rows per chunk when computing validation loss and metrics. ``drop_remainder``:
    skip the last partial batch of each epoch instead of padding and masking it.
    ``gather``: ``"step"`` gathers each batch's rows from the data as the step needs
    them; ``"epoch"`` gathers the whole epoch's rows once, in batch order (one more
    copy of the training data in device memory), so each step reads a contiguous
    batch. The two train bitwise alike; neither was consistently faster across the
    benchmark's works on an H200, an H100 or the CPU (BENCHMARKS.md), so the default
    costs no memory.
    """

    epochs_per_call: int | None = None
    unroll: int | None = None
    eval_batch_size: int = 1024
    drop_remainder: bool = False
    gather: str = "step"
