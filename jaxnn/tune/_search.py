"""Hyperparameter search inside the compiled program: ``jaxnn.search`` (private;
``jaxnn.tune`` re-exports it).

Configurations drawn from a :mod:`jaxnn.tune.space` train side by side in ``fit_many``'s
vmapped slots; the schedule's decisions (rank, promote, prune, refill; for PBT copy
and perturb) are made inside the compiled chunk of epochs, so a search costs what its
epochs cost, with one host round trip per chunk. See ``docs/guides/search.md``.
"""

import contextlib
import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import (
    _driver,
    _files,
    _inputs,
    _logs,
    _models,
    _optim,
    _placement,
    _records,
    _setup,
    optim,
)
from jaxnn._checks import MAX_ELEMENTS, check_memory, positive_int
from jaxnn.activations import get_activation
from jaxnn.distributed import fetch
from jaxnn.initializers import FAN_MODE, INITIALIZERS, get_initializer
from jaxnn.metrics import higher_is_better
from jaxnn.mlp import MLPApply, MLPTrainApply, Model
from jaxnn.options import Checkpoints, EarlyStopping, SearchResult, Tuning
from jaxnn.settings import Settings
from jaxnn.tune import _buckets, _program, _results
from jaxnn.tune.schedulers import PBT, SuccessiveHalving
from jaxnn.tune.space import Choice, Listed, Uniform


def _check_space(space_: dict, model, optimizer: str) -> tuple:
    """``space`` as sorted ``(name, distribution)`` pairs, every name known."""
    if not isinstance(space_, dict) or not space_:
        raise TypeError(
            "space must be a non-empty dict {name: jaxnn.space.loguniform(...) | uniform | choice}"
        )
    apply = getattr(model, "apply", model)
    unknown = []
    for name, dist in space_.items():
        if not isinstance(name, str):
            raise TypeError(f"space's names must be strings, got {name!r}")
        if not isinstance(dist, Uniform | Choice):
            raise TypeError(
                f"space[{name!r}] must be jaxnn.space.loguniform/uniform/choice(...), got {dist!r}"
            )
        if name == "activation":
            _check_activation(dist, model)
            continue
        if isinstance(dist, Choice) and dist.named:
            raise ValueError(
                f"space[{name!r}] is a choice of names; only 'activation' takes names, {name!r} numbers"
            )
        low, high = dist.bounds()
        if name in _optim.HYPERPARAMS[optimizer]:
            _optim.check_hyperparam(optimizer, name, low)
            _optim.check_hyperparam(optimizer, name, high)
        elif name == "width":
            _check_width(dist, model)
        elif name == "depth":
            _check_depth(dist, model)
        elif name == "batch_size" and not (
            isinstance(dist, Choice) and all(float(b).is_integer() and b >= 1 for b in dist.options)
        ):
            raise ValueError(
                f"space['batch_size'] must be jaxnn.space.choice of positive ints, got {dist!r}"
            )
        elif name == "dropout" and not 0 <= low <= high < 1:
            raise ValueError(f"space['dropout'] must stay in [0, 1), got {dist!r}")
        elif name not in ("dropout", "batch_size") and (
            isinstance(apply, MLPApply) or not hasattr(apply, "train_apply")
        ):  # a jaxnn.mlp reads only its own names from its variables
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"space names {unknown} are not hyperparameters this search can vary: the optimizer "
            f"{optimizer} takes {list(_optim.HYPERPARAMS[optimizer])}; any model takes 'batch_size'; a jaxnn.mlp "
            "also takes 'width', 'depth', 'activation' and 'dropout'; a model of your own with a training mode "
            "(a Flax module) also takes the names of the values its training mode reads from its variables"
        )
    return tuple(sorted(space_.items()))


def _check_activation(dist, model) -> None:
    spec = _results.mlp_spec(model)
    if spec is None or len(spec["sizes"]) < 3:
        raise ValueError(
            "space['activation'] sets the hidden layers' activation of a jaxnn.mlp with hidden layers; got "
            "another model"
        )
    if not isinstance(dist, Choice) or not dist.named:
        raise ValueError(
            f"space['activation'] must be jaxnn.space.choice of activation names, got {dist!r}"
        )
    for name in dist.options:
        get_activation(name)  # an unknown name is refused, with the known ones


def _check_depth(dist, model) -> None:
    spec = _results.mlp_spec(model)
    hidden = [] if spec is None else spec["sizes"][1:-1]
    if not hidden or len(set(hidden)) > 1:
        raise ValueError(
            "space['depth'] uses the first hidden layers of a jaxnn.mlp whose hidden layers are equal in "
            f"width (the others pass their input on); got {'another model' if spec is None else spec['sizes']}"
        )
    if not isinstance(dist, Choice) or not all(
        float(d).is_integer() and 1 <= d <= len(hidden) for d in dist.options
    ):
        raise ValueError(
            f"space['depth'] must be jaxnn.space.choice of ints from 1 to the model's {len(hidden)} hidden "
            f"layers, got {dist!r}"
        )
    if spec.get("norm") == "batch":
        raise ValueError(
            "space['depth'] cannot pass through a batch-norm MLP's layers (their running statistics); "
            "use norm=None or 'layer'"
        )


def _check_width(dist, model) -> None:
    spec = _results.mlp_spec(model)
    if spec is None or len(spec["sizes"]) < 3:
        raise ValueError(
            "space['width'] masks the hidden units of a jaxnn.mlp with hidden layers; got another model"
        )
    if not isinstance(dist, Choice) or not all(
        float(w).is_integer() and w >= 1 for w in dist.options
    ):
        raise ValueError(
            f"space['width'] must be jaxnn.space.choice of positive ints, got {dist!r}"
        )
    if spec.get("norm") == "layer":
        raise ValueError(
            "space['width'] cannot mask a layer-norm MLP (its statistics span every unit)"
        )
    widest = min(spec["sizes"][1:-1])
    if max(dist.options) > widest:
        raise ValueError(
            f"the model's hidden layers ({widest} units) must hold the largest width {max(dist.options)}"
        )
    if (
        not _rebuildable(model)
        or id(get_initializer(spec.get("init") or "he_normal")) not in FAN_MODE
    ):
        named = sorted(n for n, i in INITIALIZERS.items() if id(i) in FAN_MODE)
        raise ValueError(
            "space['width'] builds the narrower networks from model.spec: the model needs jaxnn.mlp's default "
            f"or a named variance-scaling initializer ({named}), float32 params and zero biases"
        )


def _rebuildable(model) -> bool:
    """Whether ``model`` is a ``jaxnn.mlp`` with the default initializers, which its
    spec rebuilds exactly."""
    return _results.mlp_spec(model) is not None and getattr(model.init, "rebuilt_from_spec", False)


def _optimizer(optimizer, names) -> optim.Optimizer:
    if optimizer is None:
        optimizer = "momentum" if "momentum" in names else "sgd"
    if isinstance(optimizer, str):
        optimizer = optim.Optimizer(optimizer, {})
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(
            f"search's optimizer must be a name or a jaxnn.optim value, got {optimizer!r}"
        )
    _optim.check_name(optimizer.name)
    return optimizer


def _model_for_search(model, space_: dict):
    """The model the slots train: an mlp whose variables may carry its ``width``,
    ``depth`` and the index of its hidden ``activation`` among the space's options."""
    if not {"width", "depth", "activation"} & set(space_):
        return model
    apply = model.apply
    options = space_["activation"].options if "activation" in space_ else ()
    hidden = tuple(get_activation(name) for name in options)
    return Model(
        model.init, MLPTrainApply(apply.activations, apply.norm, apply.dropout, hidden), model.spec
    )


def _monitor(monitor, plan) -> str:
    names = _records.record_names(plan)
    if monitor is None:
        return "val_loss" if "val_loss" in names else "loss"
    if monitor not in names:
        raise ValueError(f"monitor={monitor!r} is not recorded; expected one of {names}")
    return monitor


def search(
    model,
    params,
    x,
    y,
    *,
    loss,
    key: jax.Array,
    space: dict,
    schedule: SuccessiveHalving | PBT | None = None,
    num_configs: int = 81,
    slots: int | None = None,
    validation="auto",
    monitor: str | None = None,
    optimizer=None,
    batch_size: int | None = None,
    shuffle: bool = True,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    sample_weight=None,
    progress: bool = True,
    tuning: Tuning | None = None,
    devices=None,
    cv: int | None = None,
    checkpoints: Checkpoints | None = None,
    resume=None,
    log_dir=None,
    refit: bool = True,
    width_buckets: bool | None = None,
) -> SearchResult:
    """Searches hyperparameters inside one compiled program.

    Args:
      model: a :class:`jaxnn.Model` (``jaxnn.mlp`` for a ``width`` or ``depth`` search:
        the widest and deepest network a trial may use).
      params: ``None`` (each configuration starts from its own ``model.init``, from
        its own key), or params every configuration starts from (not with ``width``).
      x, y, loss, shuffle, metrics, sample_weight, tuning: as in ``fit``.
      batch_size: as in ``fit`` (default 32), unless the space searches it.
      key: the run's key. Configuration ``i``'s key is
        ``fold_in(jaxnn.rng.stream(key, "search"), i)``: its values, initial params and
        data order come from it, whatever the slots.
      space: ``{name: distribution}`` from :mod:`jaxnn.tune.space`. Names: the optimizer's
        hyperparameters (``learning_rate``, ``momentum``, ``l2``, ``b1``, ...),
        ``dropout`` (a ``jaxnn.mlp`` built with dropout), ``width`` (the hidden units
        of a ``jaxnn.mlp``; the model given holds the largest width), ``depth`` (its
        first hidden layers, of equal width; the others pass their input on), ``activation``
        (a choice of names: a ``jaxnn.mlp``'s hidden activation), ``batch_size`` (a
        choice of ints: each one drawn trains in its own bucket of slots, with its
        own compiled epoch; trials are ranked across them at the same epochs), or any
        name a model with a training mode reads from its variables (``variables[name]``).
      schedule: :class:`SuccessiveHalving` (default), :class:`Hyperband` or :class:`PBT`.
      num_configs: configurations drawn (PBT: the population).
      slots: configurations trained at once (default ``ceil(num_configs / eta**2)``,
        rounded up to a multiple of the devices; PBT trains its whole population).
        A ``batch_size`` search, or a ``width`` search with buckets
        (``width_buckets``), shares them among the buckets in proportion to the
        configurations drawn into each: at least one each, a multiple of the devices.
      devices: the devices the slots are split over (``None``: every device; a
        count; a list), as ``fit_many`` splits its models; the slots must divide
        evenly. The results do not depend on the split.
      validation: the held-out data the trials are ranked on, as in ``fit``; ``"auto"``
        (default): a random fifth of ``x`` (a fraction ``0.2``), or with ``cv`` the folds.
      cv: k-fold cross-validation instead: every trial trains k copies side by side
        (the folds are a second vmapped axis), each holding out one fold of ``x``
        (``jaxnn.rng``'s ``validation`` stream orders the rows), and is scored by the
        mean of their monitored values. Or the folds themselves, as scikit-learn's
        ``cv`` takes them: two or more ``(train, held_out)`` pairs of row indices
        (``list(KFold(5).split(x))``). Folds of unequal size are padded with rows of
        weight 0.
      monitor: the recorded value ranked (default ``val_loss``, or ``loss`` without
        validation); accuracy and r2 rank higher as better.
      optimizer: a name or a ``jaxnn.optim`` value (its fixed hyperparameters);
        default ``"momentum"`` when ``momentum`` is searched, else ``"sgd"``.
      early_stopping: each trial's own early stopping (status ``stopped``; not PBT). A
        stopped trial leaves the race: it is never promoted and cannot win. A
        ``RuntimeWarning`` names one that scored better than the winner.
      progress: a progress bar (in process 0), updated after each chunk of epochs:
        the trials decided (PBT: the epochs), the slots training and the highest
        rung reached.
      checkpoints: ``jaxnn.Checkpoints``: the search's whole state is saved after
        every chunk of ``every`` epochs to ``dir/search-NNNNNNNNNN.jaxnn`` (N counts the
        chunks), keeping the newest ``keep``, with ``metadata``; the folder is the
        search's own, as a fit's (locked while it runs; another run's files are
        refused unless ``overwrite``). ``run_id`` defaults to the search's
        fingerprint; ``every_steps`` is refused.
      resume: a folder (or file) a search with the same call checkpointed into: it
        goes on from its newest checkpoint and ends as the uninterrupted search would, bit for bit.
      log_dir: TensorBoard logs, written when the search ends: one run per trial
        (``trial-000``, ...) with its monitored value per epoch and its values,
        status, rung and parent in the HParams view.
      refit: train the winner again on every row of ``x`` (a ``validation``
        fraction's rows too) for the epochs it trained, as scikit-learn's searches
        do: ``best_params`` are then those. ``False``: the winner's params from the
        search (trained on the rows not held out). PBT's winner is never refit: its
        values changed as it trained.
      width_buckets: group a ``width`` search's slots into buckets, each computed at
        its widest option, so that padding never costs more than 2x a trial's own
        FLOPs (see ``slots``). ``None`` (default): when a step of the slots at the
        largest width is at least ``2**24`` multiply-adds on a CPU (``2**30`` on an
        accelerator): each bucket compiles its own epoch, which costs more than
        the padding on smaller work. ``True`` or ``False``: always or never.

    Returns:
      A :class:`jaxnn.SearchResult`.
    """
    schedule = SuccessiveHalving() if schedule is None else schedule
    if not isinstance(schedule, SuccessiveHalving | PBT):
        raise TypeError(
            f"schedule must be jaxnn.SuccessiveHalving, jaxnn.Hyperband or jaxnn.PBT, got {schedule!r}"
        )
    optimizer = _optimizer(optimizer, space if isinstance(space, dict) else {})
    space_ = _check_space(space, model, optimizer.name)
    schedule.check(space, early_stopping)
    if params is not None and "width" in space:
        raise ValueError(
            "a width search starts each configuration from its own init: pass params=None"
        )
    if "batch_size" in space and batch_size is not None:
        raise ValueError(
            f"batch_size={batch_size!r} and space['batch_size']: the batch size is searched; leave batch_size= out"
        )
    key = _models.check_key(key)
    devices_n = len(_placement.resolve_devices(devices)) if slots is None else 1
    n, drawn_n, k = schedule.sizes(num_configs, slots, devices_n)
    listed = {name: len(d.picks) for name, d in space_ if isinstance(d, Listed)}
    if any(count != drawn_n for count in listed.values()):
        raise ValueError(
            f"space lists {listed} values; a listed name gives one value per configuration: "
            f"expected num_configs={drawn_n} values each"
        )
    for name, flag in (("progress", progress), ("refit", refit)):
        if not isinstance(flag, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if cv is None and isinstance(validation, str) and validation == "auto":
        validation = 0.2
    elif cv is not None:
        cv = _inputs.check_folds(cv, len(x) if hasattr(x, "__len__") else None)
        if (
            _inputs.fold_count(cv) < 2
            or not (isinstance(validation, str) and validation == "auto")
            or early_stopping is not None
        ):
            raise ValueError(
                f"cv={_inputs.folds_text(cv)}: k-fold cross-validation takes k >= 2 and replaces validation= "
                "(leave it out) and "
                "early_stopping= (each fold would stop on its own)"
            )
        if isinstance(schedule, PBT):
            raise ValueError(
                f"cv={_inputs.folds_text(cv)} with PBT: a PBT member copies another's weights as it trains, "
                "which has no meaning across folds; give PBT a validation= part, or use SuccessiveHalving or "
                "Hyperband with cv"
            )
        validation = None
    # one configuration's params (their shapes): None for a plain apply_fn without params (refused later)
    one = (
        params
        if params is not None or not hasattr(model, "init")
        else jax.eval_shape(model.init, key)
    )
    _check_size(one, (n, k, _inputs.fold_count(cv)), schedule)
    buckets = (
        _bucket(model, space_, key, (n, k, batch_size or 32), devices, width_buckets)
        if {"width", "batch_size"} & set(space)
        else ()
    )
    k = sum(b.slots for b in buckets) or k
    names = tuple(name for name, _ in space_ if name in _optim.HYPERPARAMS[optimizer.name])
    per_slot = {name: np.full(k, dict(space_)[name].bounds()[0], np.float32) for name in names}
    optimizer_values = optim.Optimizer(optimizer.name, {**optimizer.hyperparams, **per_slot})
    settings = Settings(
        loss=loss,
        key=key,
        optimizer=optimizer_values,
        batch_size=1 if "batch_size" in space else batch_size or 32,  # searched: each bucket's own
        epochs=schedule.max_epochs,
        shuffle=shuffle,
        validation=validation,
        metrics=metrics,
        early_stopping=early_stopping,
        sample_weight=sample_weight,
        devices=devices,
        progress=False,
        tuning=tuning,
    )
    models = _setup.Models(k, np.zeros(k) if "dropout" in space else None)
    run = _setup.setup(_model_for_search(model, space), params, x, y, settings, models)
    plan, data = (
        (run.plan, run.data)
        if cv is None
        else _inputs.fold_data(run.plan, run.data, cv, key, run.settings.tuning.drop_remainder)
    )
    monitor = _monitor(monitor, plan)
    fixed = tuple(
        sorted(
            (name, float(v[0]))
            for name, v in run.hyperparams.items()
            if name not in (*names, "dropout")
        )
    )
    if checkpoints is not None and not isinstance(checkpoints, Checkpoints):
        raise TypeError(
            f"checkpoints must be a jaxnn.Checkpoints(...) or None, got {checkpoints!r}"
        )
    log_dir = _logs.check_log_dir(log_dir)
    if log_dir is not None:  # a folder that cannot be written fails now, not after the search
        _files.make_folder(log_dir, "log_dir")
        if not os.access(log_dir, os.W_OK):
            raise PermissionError(f"log_dir {log_dir} cannot be written")
    chunk = _setup.epochs_per_call(run.settings.tuning, schedule.max_epochs, progress, checkpoints)
    prog = _make_program(
        plan,
        model,
        params,
        space_,
        (names, fixed),
        schedule,
        (n, k),
        monitor,
        chunk,
        _inputs.fold_count(cv),
    )
    prog = dataclasses.replace(
        prog, buckets=_batch_plans(buckets, plan, run.settings.tuning, one, k)
    )
    same = dict(
        loss=loss,
        batch_size=run.plan.batch_size,
        shuffle=shuffle,
        metrics=metrics,
        early_stopping=early_stopping,
        tuning=tuning,
    )
    held_out = validation if isinstance(validation, tuple) else ()
    if isinstance(cv, list):  # given folds: the rows each holds out make the search
        held_out = tuple(rows for fold in cv for rows in fold)
    file, saver, done = _results.checkpointing(
        checkpoints,
        resume,
        lambda: _results.fingerprint(
            prog, key, loss, (x, y, sample_weight, *held_out), {**same, "loss": None}
        ),
    )
    host = {"chunks": 0, "reads": 0}
    with saver or contextlib.nullcontext():
        pool, state = _program.run_begin(prog, key, np.asarray(schedule.brackets(n)), drawn_n)
        state = _results.restore(file, state)
        state = _train(prog, state, pool, data, run.placement, (progress, saver, done), host)
    first = data if cv is None else jax.tree.map(lambda a: a[0], data)  # replay: cv's fold 0
    result = _results.result(prog, state, first, model, pool.inits, pool.keys, optimizer, same)
    result = dataclasses.replace(result, host=host)
    if refit and result.best_config is not None and schedule.refits:
        result = dataclasses.replace(
            result, best_params=_results.refit(result, x, y, sample_weight)
        )
    if log_dir is not None:
        _results.write_logs(log_dir, result)
    if (better := _results.stopped_better(result.trials, prog.sign)) is not None:
        warnings.warn(
            f"trial {better['id']}, stopped by its early stopping, scored {monitor}="
            f"{better['score']:.4g}, better than "
            + (
                f"the winner's {result.trials[0]['score']:.4g}"
                if result.best_config
                else "any finished trial"
            )
            + ": a stopped trial does not compete. To let it, raise early_stopping.patience or "
            "leave early_stopping out (the schedule prunes the weak trials already)",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _check_size(one, sizes: tuple, schedule) -> None:
    """Refuses a search whose state would not fit the device, before any work: the
    configurations' initial params (``one``: one configuration's), the slots' training
    state (params, an optimizer's two moments at most, early stopping's best params)
    and the trials' table."""
    if one is None:
        return
    n, k, folds = sizes
    p = sum(math.prod(jnp.shape(a)) for a in jax.tree.leaves(one))
    epochs, rungs = schedule.max_epochs, len(schedule.rungs())
    check_memory(
        {
            f"{n} configurations' initial params ({p} each)": 4 * n * p,
            f"{k} slots' training state": 4 * 4 * k * max(folds, 1) * p,
            f"the trials' table ({n} x {epochs} epochs{f' x {folds} folds' if folds else ''})": 4
            * n
            * (epochs * (1 + folds) + 2 * rungs + 8),
        },
        f"a search of {n} configurations",
    )


def _bucket(model, space_: tuple, key, sizes: tuple, devices, choice) -> tuple:
    """The search's buckets (``jaxnn.tune._buckets``): one per batch size searched
    and, with width buckets, per group of widths; or ``()``."""
    if choice not in (None, True, False):
        raise TypeError(f"width_buckets must be None, True or False, got {choice!r}")
    n, k, batch_size = sizes
    dists = dict(space_)
    by_width = "width" in dists and choice is not False
    if by_width:
        mlp_sizes = _results.mlp_spec(model)["sizes"]
        batch_size = max(dists["batch_size"].options) if "batch_size" in dists else batch_size
        work = k * positive_int(batch_size, "batch_size", MAX_ELEMENTS) * _buckets.flops(mlp_sizes)
        by_width = choice or work >= _buckets.BUCKET_WORK[jax.default_backend() == "cpu"]
    if not by_width and "batch_size" not in dists:
        return ()
    drawn = {name: np.asarray(v) for name, v in fetch(_program.run_shapes(space_, key, n)).items()}
    return _buckets.buckets(
        mlp_sizes if by_width else None,
        drawn["width"] if by_width else None,
        drawn.get("batch_size"),
        k,
        len(_placement.resolve_devices(devices)),
    )


def _batch_plans(buckets: tuple, plan, tuning, one, k: int) -> tuple:
    """``buckets`` with each batch size's epoch: its batches and loop unroll, as ``fit``
    with that batch size builds them for the ``k`` slots' params (``one``: one
    configuration's), each size at most the rows a trial trains on."""
    stacked = [jax.ShapeDtypeStruct((k, *jnp.shape(a)), jnp.float32) for a in jax.tree.leaves(one)]

    def epoch(b):
        size = positive_int(b.batch, "each space['batch_size'] option", plan.n)
        n_batches, unroll = _setup.epoch_shape(plan.n, size, tuning, stacked)
        return b._replace(n_batches=n_batches, unroll=unroll)

    return tuple(b if b.batch is None else epoch(b) for b in buckets)


class _Chunk(NamedTuple):
    """What one compiled call of the search gives back, on the host."""

    state: _program.State
    live: int  # slots still training
    rung: int  # the highest rung reached
    done: int  # the bar's position: trials decided (PBT: epochs)
    count: int  # chunks run, the resumed ones too


def _train(prog, state, pool, data, place, observed: tuple, host: dict):
    """Drives the search's chunks (``jaxnn._driver.drive``) until no slot trains:
    each is one compiled call and one read of three numbers; ``observed``:
    ``(progress, saver, chunks run before)``; ``host`` counts the chunks and the
    values read. Returns the final state."""
    progress, saver, done = observed
    # the slots over the devices; the rest on each
    pool, data = place.replicate(pool), place.replicate(data)
    state = place.replicate(state)._replace(
        carry=place.split(state.carry), trial=place.split(state.trial)
    )

    def chunks(state):
        for count in itertools.count(done + 1):
            state, status = _program.run_chunk(prog, state, data, pool)
            live, rung, decided = (int(v) for v in fetch(status))  # the one sync per chunk
            host["chunks"], host["reads"] = host["chunks"] + 1, host["reads"] + len(status)
            yield _Chunk(state, live, rung, decided, count)
            if live == 0:
                return

    observers = []
    if saver is not None:
        observers.append(lambda c: saver.save({"state": c.state}, (c.count, 0), {}))
    bar = None
    if progress:
        total, unit = prog.schedule.progress(prog)
        # rungs numbered as trials' rows number them: 0 is the first
        text = lambda c: {
            "slots": c.live,
            **({"rung": f"{c.rung} of 0-{len(prog.rungs) - 1}"} if len(prog.rungs) > 1 else {}),
        }
        bar = _driver.Bar(total, 0, unit, lambda c: c.done, text)
    return _driver.drive(chunks(state), observers, bar).state


def _make_program(
    plan, model, params, space_, names, schedule, sizes, monitor, chunk, folds
) -> _program.Program:
    spec, mlp_spec, init = _results.mlp_spec(model), (), getattr(model, "init", None)
    if spec is not None and _rebuildable(model):  # equal settings share one compiled program
        mlp_spec = tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items())
        )
        init = None
    if params is not None:
        init = _Fixed(params)
    sign = -1.0 if higher_is_better(monitor, plan.metrics) else 1.0
    return _program.Program(
        plan, init, mlp_spec, space_, *names, schedule, *sizes, monitor, sign, chunk, folds
    )


class _Fixed:
    """An init that returns the params given (every configuration starts there)."""

    def __init__(self, params):
        self.params = params

    def __call__(self, key):
        return jax.tree.map(jnp.asarray, self.params)
