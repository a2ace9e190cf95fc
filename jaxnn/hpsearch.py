"""Hyperparameter search inside the compiled program: ``jaxnn.search``.

Configurations drawn from a :mod:`jaxnn.space` train side by side in ``fit_many``'s
vmapped slots; the schedule's decisions (rank, promote, prune, refill; for PBT copy
and perturb) are made inside the compiled chunk of epochs, so a search costs what its
epochs cost, with one host round trip per chunk. See ``docs/guides/search.md``.
"""

import dataclasses
import math
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _models, _records, _search, _setup, optim, parallel, rng
from jaxnn import space as spaces
from jaxnn._checks import MAX_ELEMENTS, MAX_EPOCHS, positive_int
from jaxnn.distributed import fetch
from jaxnn.initializers import FAN_MODE, INITIALIZERS, get_initializer
from jaxnn.mlp import MLPTrainApply, Model
from jaxnn.mlp import mlp as build_mlp
from jaxnn.options import EarlyStopping, SearchResult, Tuning
from jaxnn.train import fit


def _eta(eta) -> None:
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(f"eta must be an int >= 2, got {eta!r}")


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving:
    """Successive halving with slot refill (ASHA with every slot advancing together).

    A trial trains ``min_epochs`` (the grace period); then at each rung (``min_epochs``
    times a power of ``eta``, up to ``max_epochs``) it is promoted if its best monitored
    value so far is in the top ``1/eta`` of the trials that reached that rung, else
    pruned, and its slot takes the next configuration. A promoted trial trains on from
    its own params and optimizer state (never retrained)."""

    min_epochs: int = 1
    max_epochs: int = 27
    eta: int = 3

    def __post_init__(self):
        positive_int(self.min_epochs, "min_epochs", MAX_EPOCHS)
        positive_int(self.max_epochs, "max_epochs", MAX_EPOCHS)
        _eta(self.eta)
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must be at most max_epochs ({self.max_epochs})")

    def rungs(self) -> tuple:
        """The epochs at which trials are ranked; the last is ``max_epochs``."""
        out, e = [], self.min_epochs
        while e < self.max_epochs:
            out.append(e)
            e *= self.eta
        return (*out, self.max_epochs)

    def brackets(self, n: int) -> np.ndarray:
        """Each configuration's bracket: the first rung at which it is ranked."""
        return np.zeros(n, np.int32)


@dataclasses.dataclass(frozen=True)
class Hyperband(SuccessiveHalving):
    """Hyperband: brackets of successive halving over the same slots. Bracket ``b``
    ranks its trials first at rung ``b`` (bracket 0 is the most aggressive); the
    configurations are shared out as Hyperband's budgets say (27, 12, 6 and 4 of 49
    for 1 to 27 epochs and ``eta`` 3), in bracket order."""

    def brackets(self, n: int) -> np.ndarray:
        r = len(self.rungs()) - 1
        weights = np.array([(r + 1) / (r - b + 1) * self.eta ** (r - b) for b in range(r + 1)])
        exact = weights / weights.sum() * n
        counts = np.floor(exact + 1e-9).astype(int)
        counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders
        return np.repeat(np.arange(r + 1, dtype=np.int32), counts)


@dataclasses.dataclass(frozen=True)
class PBT:
    """Population-based training: ``num_configs`` members train together for
    ``max_epochs``; every ``interval`` epochs the worst ``fraction`` copy the state of
    a random one of the best ``fraction`` (params, optimizer state and the position of
    its PRNG streams) and explore: each value is drawn again with probability
    ``resample``, else multiplied by one of ``perturb``'s factors (clipped into its
    range; a choice moves to the next option down or up). Each copy is a new trial
    whose ``parent`` is the member it copied."""

    interval: int = 4
    fraction: float = 0.25
    perturb: tuple = (0.8, 1.2)
    resample: float = 0.25
    max_epochs: int = 32

    def __post_init__(self):
        positive_int(self.interval, "interval", MAX_EPOCHS)
        positive_int(self.max_epochs, "max_epochs", MAX_EPOCHS)
        if (
            isinstance(self.fraction, bool)
            or not isinstance(self.fraction, int | float)
            or not 0 < self.fraction <= 0.5
        ):
            raise ValueError(f"fraction must be a number in (0, 0.5], got {self.fraction!r}")
        if isinstance(self.resample, bool) or not isinstance(self.resample, int | float) or not 0 <= self.resample <= 1:
            raise ValueError(f"resample must be a probability in [0, 1], got {self.resample!r}")
        factors = self.perturb
        if (
            not isinstance(factors, tuple | list)
            or not factors
            or not all(isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < math.inf for f in factors)
        ):
            raise ValueError(f"perturb must be a non-empty tuple of positive factors, got {factors!r}")
        object.__setattr__(self, "perturb", tuple(float(f) for f in factors))

    eta = 2  # unused by PBT; a Program field

    def rungs(self) -> tuple:
        return (self.max_epochs,)

    def brackets(self, n: int) -> np.ndarray:
        return np.zeros(n, np.int32)

    def replaced(self, population: int) -> int:
        """Members replaced at each exploit."""
        return max(1, int(self.fraction * population)) if population >= 2 else 0

    def trials(self, population: int) -> int:
        """Trials in all: the population and every copy."""
        return population + self.replaced(population) * ((self.max_epochs - 1) // self.interval)


def _check_space(space_, model, optimizer: str) -> tuple:
    """``space`` as sorted ``(name, distribution)`` pairs, every name known."""
    if not isinstance(space_, dict) or not space_:
        raise TypeError("space must be a non-empty dict {name: jaxnn.space.loguniform(...) | uniform | choice}")
    apply = getattr(model, "apply", model)
    for name, dist in space_.items():
        if not isinstance(name, str):
            raise TypeError(f"space's names must be strings, got {name!r}")
        if not isinstance(dist, spaces.Uniform | spaces.Choice):
            raise TypeError(f"space[{name!r}] must be jaxnn.space.loguniform/uniform/choice(...), got {dist!r}")
        low, high = spaces.bounds(dist)
        if name in optim.HYPERPARAMS[optimizer]:
            optim.check_hyperparam(optimizer, name, low)
            optim.check_hyperparam(optimizer, name, high)
        elif name == "width":
            _check_width(dist, model)
        elif name == "dropout" and not 0 <= low <= high < 1:
            raise ValueError(f"space['dropout'] must stay in [0, 1), got {dist!r}")
        elif name != "dropout" and not hasattr(apply, "train_apply"):
            raise ValueError(
                f"space[{name!r}]: {optimizer} has no such hyperparameter ({list(optim.HYPERPARAMS[optimizer])}); "
                "other names are model state (variables[name]) of a model with a training mode (train_apply), "
                "besides 'dropout' and 'width'"
            )
    return tuple(sorted(space_.items()))


def _mlp_spec(model) -> dict | None:
    spec = getattr(model, "spec", None)
    return spec if isinstance(model, Model) and isinstance(spec, dict) and spec.get("kind") == "mlp" else None


def _check_width(dist, model) -> None:
    spec = _mlp_spec(model)
    if spec is None or len(spec["sizes"]) < 3:
        raise ValueError("space['width'] masks the hidden units of a jaxnn.mlp with hidden layers; got another model")
    if not isinstance(dist, spaces.Choice) or not all(float(w).is_integer() and w >= 1 for w in dist.options):
        raise ValueError(f"space['width'] must be jaxnn.space.choice of positive ints, got {dist!r}")
    if spec.get("norm") == "layer":
        raise ValueError("space['width'] cannot mask a layer-norm MLP (its statistics span every unit)")
    widest = min(spec["sizes"][1:-1])
    if max(dist.options) > widest:
        raise ValueError(f"the model's hidden layers ({widest} units) must hold the largest width {max(dist.options)}")
    if not _rebuildable(model) or id(get_initializer(spec.get("init") or "he_normal")) not in FAN_MODE:
        named = sorted(n for n, i in INITIALIZERS.items() if id(i) in FAN_MODE)
        raise ValueError(
            "space['width'] builds the narrower networks from model.spec: the model needs jaxnn.mlp's default "
            f"or a named variance-scaling initializer ({named}), float32 params and zero biases"
        )


def _rebuildable(model) -> bool:
    """Whether ``model`` is a ``jaxnn.mlp`` with the default initializers, which its
    spec rebuilds exactly."""
    return _mlp_spec(model) is not None and getattr(model.init, "rebuilt_from_spec", False)


def _rebuild(spec: dict, hidden, dropout) -> Model:
    sizes = [spec["sizes"][0], *(int(h) for h in hidden), spec["sizes"][-1]]
    return build_mlp(sizes, spec["activation"], spec["output_activation"], init=spec.get("init"), dropout=dropout,
                     norm=spec.get("norm"))  # fmt: skip


def _optimizer(optimizer, names) -> optim.Optimizer:
    if optimizer is None:
        optimizer = "momentum" if "momentum" in names else "sgd"
    if isinstance(optimizer, str):
        optimizer = optim.Optimizer(optimizer, {})
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"search's optimizer must be a name or a jaxnn.optim value, got {optimizer!r}")
    optim.check_name(optimizer.name)
    return optimizer


def _model_for_search(model, space_: dict):
    """The model the slots train: an mlp whose variables may carry its ``width``."""
    if "width" not in space_:
        return model
    apply = model.apply
    return Model(model.init, MLPTrainApply(apply.activations, apply.norm, apply.dropout), model.spec)


def _monitor(monitor, plan) -> str:
    names = _records.record_names(plan)
    if monitor is None:
        return "val_loss" if "val_loss" in names else "loss"
    if monitor not in names:
        raise ValueError(f"monitor={monitor!r} is not recorded; expected one of {names}")
    return monitor


def _sizes(schedule, num_configs, slots, devices) -> tuple[int, int, int]:
    """``(trials, configurations drawn, slots)``; with ``devices`` (the default
    slots), the slots rounded up to a multiple of their number."""
    n = positive_int(num_configs, "num_configs", MAX_ELEMENTS)
    if isinstance(schedule, PBT):
        if slots is not None and slots != n:
            raise ValueError(f"PBT trains its whole population at once: slots must be None or {n}, got {slots!r}")
        return schedule.trials(n), n, n
    if slots is not None:
        return n, n, positive_int(slots, "slots", MAX_ELEMENTS)
    k, d = min(n, math.ceil(n / schedule.eta**2)), len(parallel.resolve_devices(devices))
    return n, n, math.ceil(k / d) * d


# Over 60 lines only by its signature and docstring (every argument documented).
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
    validation=0.2,
    monitor: str | None = None,
    optimizer=None,
    batch_size: int = 32,
    shuffle: bool = True,
    metrics: Sequence = (),
    early_stopping: EarlyStopping | None = None,
    sample_weight=None,
    progress: bool = True,
    tuning: Tuning | None = None,
    devices=None,
    cv: int | None = None,
    refit: bool = True,
) -> SearchResult:
    """Searches hyperparameters inside one compiled program.

    Args:
      model: a :class:`jaxnn.Model` (``jaxnn.mlp`` for a ``width`` search).
      params: ``None`` (each configuration starts from its own ``model.init``, from
        its own key), or params every configuration starts from (not with ``width``).
      x, y, loss, batch_size, shuffle, metrics, sample_weight, tuning: as in ``fit``.
      key: the run's key. Configuration ``i``'s key is
        ``fold_in(jaxnn.rng.stream(key, "search"), i)``: its values, initial params and
        data order come from it, whatever the slots.
      space: ``{name: distribution}`` from :mod:`jaxnn.space`. Names: the optimizer's
        hyperparameters (``learning_rate``, ``momentum``, ``l2``, ``b1``, ...),
        ``dropout`` (a ``jaxnn.mlp`` built with dropout), ``width`` (the hidden units
        of a ``jaxnn.mlp``; the model given holds the largest width), or any name a
        model with a training mode reads from its variables (``variables[name]``).
      schedule: :class:`SuccessiveHalving` (default), :class:`Hyperband` or :class:`PBT`.
      num_configs: configurations drawn (PBT: the population).
      slots: configurations trained at once (default ``ceil(num_configs / eta**2)``,
        rounded up to a multiple of the devices; PBT trains its whole population).
      devices: the devices the slots are split over (``None``: every device; a
        count; a list), as ``fit_many`` splits its models; the slots must divide
        evenly. The results do not depend on the split.
      validation: the held-out data the trials are ranked on, as in ``fit``.
      cv: k-fold cross-validation instead: every trial trains k copies side by side
        (the folds are a second vmapped axis), each holding out one fold of ``x``
        (``jaxnn.rng``'s ``validation`` stream orders the rows), and is scored by the
        mean of their monitored values. Folds of unequal size are padded with rows of
        weight 0.
      monitor: the recorded value ranked (default ``val_loss``, or ``loss`` without
        validation); accuracy and r2 rank higher as better.
      optimizer: a name or a ``jaxnn.optim`` value (its fixed hyperparameters);
        default ``"momentum"`` when ``momentum`` is searched, else ``"sgd"``.
      early_stopping: each trial's own early stopping (status ``stopped``; not PBT).
      progress: print a line per chunk: trials started and slots alive.
      refit: train the winner again on every row of ``x`` (a ``validation``
        fraction's rows too) for the epochs it trained, as scikit-learn's searches
        do: ``best_params`` are then those. ``False``: the winner's params from the
        search (trained on the rows not held out). PBT's winner is never refit: its
        values changed as it trained.

    Returns:
      A :class:`jaxnn.SearchResult`.
    """
    schedule = SuccessiveHalving() if schedule is None else schedule
    if not isinstance(schedule, SuccessiveHalving | PBT):
        raise TypeError(f"schedule must be jaxnn.SuccessiveHalving, jaxnn.Hyperband or jaxnn.PBT, got {schedule!r}")
    if isinstance(schedule, PBT) and early_stopping is not None:
        raise ValueError("PBT replaces its worst members itself: early_stopping goes with the halving schedules")
    optimizer = _optimizer(optimizer, space if isinstance(space, dict) else {})
    space_ = _check_space(space, model, optimizer.name)
    if isinstance(schedule, PBT) and "width" in space:
        raise ValueError("PBT cannot change a width: a copied network's masked units have no weights to grow into")
    if params is not None and "width" in space:
        raise ValueError("a width search starts each configuration from its own init: pass params=None")
    n, drawn_n, k = _sizes(schedule, num_configs, slots, None if slots is not None else devices)
    if cv is not None:
        cv = positive_int(cv, "cv", MAX_ELEMENTS)
        if cv < 2 or validation not in (None, 0.2) or early_stopping is not None:
            raise ValueError(
                f"cv={cv}: k-fold cross-validation takes k >= 2 and replaces validation= (leave it out) and "
                "early_stopping= (each fold would stop on its own)"
            )
        validation = None
    names = tuple(name for name, _ in space_ if name in optim.HYPERPARAMS[optimizer.name])
    per_slot = {name: np.full(k, spaces.bounds(dict(space_)[name])[0], np.float32) for name in names}
    run = _setup.setup(
        _model_for_search(model, space), params, x, y, loss=loss, key=key,
        optimizer=optim.Optimizer(optimizer.name, {**optimizer.hyperparams, **per_slot}), batch_size=batch_size,
        epochs=schedule.max_epochs, shuffle=shuffle, validation=validation, metrics=metrics,
        early_stopping=early_stopping, sample_weight=sample_weight, checkpoints=None, resume=None, log_dir=None,
        devices=devices, progress=False, tuning=tuning, num_models=k,
        dropout=np.zeros(k) if "dropout" in space else None, many=True,
    )  # fmt: skip
    plan, data = (run.plan, run.data) if cv is None else _fold_data(run, cv, _models.check_key(key), tuning)
    monitor = _monitor(monitor, plan)
    fixed = tuple(sorted((name, float(v[0])) for name, v in run.hyperparams.items() if name not in (*names, "dropout")))
    prog = _program(plan, model, params, space_, (names, fixed), schedule, (n, k), monitor, progress, cv or 0)
    pool, state = _search.run_begin(prog, _models.check_key(key), jnp.asarray(schedule.brackets(n)), drawn_n)
    place = run.placement  # the slots over the devices; the table, the pool and the data on each
    pool, data = place.replicate(pool), place.replicate(data)
    state = place.replicate(state)._replace(carry=place.split(state.carry), trial=place.split(state.trial))
    while True:
        state, status = _search.run_chunk(prog, state, data, pool)
        live, started = fetch(status)  # the one sync per chunk
        if progress:
            print(f"search: {int(started)}/{n} trials started, {int(live)} slots training", file=sys.stderr)
        if live == 0:
            break
    same = dict(loss=loss, batch_size=run.plan.batch_size, shuffle=shuffle, metrics=metrics,
                early_stopping=early_stopping, tuning=tuning)  # fmt: skip
    first = data if cv is None else jax.tree.map(lambda a: a[0], data)  # replay: cv's fold 0
    result = _result(prog, state, first, model, pool.inits, pool.keys, optimizer, same)
    if refit and result.best_config is not None and not isinstance(schedule, PBT):
        result = dataclasses.replace(result, best_params=_refit(result, x, y, sample_weight))
    return result


def _refit(result: SearchResult, x, y, sample_weight):
    """The winner trained again alone on every row of ``x`` (its validation rows too,
    when they were a fraction of it), for the epochs it trained, from its own key;
    zero-padded to the model given."""
    keywords = result.replay(result.trials[0]["id"])
    keywords.update(x=x, y=y, sample_weight=sample_weight, validation=None, metrics=(), early_stopping=None)
    params = fit(**keywords).params
    pad = lambda a, b: jnp.zeros_like(b).at[tuple(slice(0, s) for s in jnp.shape(a))].set(a)
    return jax.tree.map(pad, params, result.best_params)


def _fold_data(run, cv: int, key, tuning):
    """The plan of one fold and the folds' data, stacked on a leading axis: fold ``f``
    holds out the ``f``-th of ``cv`` parts of a permutation of the rows (stream
    ``validation``); parts of unequal size are padded with rows of weight 0."""
    x, y, w = run.data.x, run.data.y, run.data.w
    n = x.shape[0]
    if cv > n:
        raise ValueError(f"cv={cv} folds of {n} rows: expected at most {n}")
    parts = np.array_split(np.asarray(jax.random.permutation(rng.stream(key, "validation"), n)), cv)
    folds = [(np.concatenate(parts[:f] + parts[f + 1 :]), parts[f]) for f in range(cv)]
    m, v = n - len(parts[-1]), len(parts[0])  # the largest training and validation parts
    batch_size = positive_int(run.plan.batch_size, "batch_size", m)
    pad = lambda idx, size: np.concatenate([idx, np.repeat(idx[:1], size - len(idx))])
    mask = lambda idx, size: (np.arange(size) < len(idx)).astype(np.float32)
    padded = n % cv != 0

    def side(which: int, size: int):
        idx = np.stack([pad(f[which], size) for f in folds])
        weights = None
        if padded or w is not None:
            weights = np.stack([mask(f[which], size) for f in folds]) * (1.0 if w is None else np.asarray(w)[idx])
        return x[idx], y[idx], None if weights is None else jnp.asarray(weights, jnp.float32)

    tuning = tuning or Tuning()
    n_batches = m // batch_size if tuning.drop_remainder else math.ceil(m / batch_size)
    plan = run.plan._replace(n=m, n_batches=n_batches, n_val=v)
    return plan, type(run.data)(*side(0, m), *side(1, v))


def _program(plan, model, params, space_, names, schedule, sizes, monitor, progress, folds) -> _search.Program:
    spec, mlp_spec, init = _mlp_spec(model), (), getattr(model, "init", None)
    if spec is not None and _rebuildable(model):  # equal settings share one compiled program
        dropout = tuple(spec["dropout"]) if spec.get("dropout") else 0.0
        mlp_spec = (tuple(spec["sizes"]), spec["activation"], spec["output_activation"], dropout, spec.get("norm"),
                    spec.get("init"))  # fmt: skip
        init = None
    if params is not None:
        init = _Fixed(params)
    ticks = max(1, math.ceil(schedule.max_epochs / (10 if progress else 1)))
    higher = monitor.removeprefix("val_") in ("accuracy", "r2")
    return _search.Program(
        plan, init, mlp_spec, space_, *names, schedule.rungs(), schedule.eta, *sizes, monitor,
        -1.0 if higher else 1.0, min(1 << (ticks - 1).bit_length(), 1024),
        schedule if isinstance(schedule, PBT) else None, folds,
    )  # fmt: skip


class _Fixed:
    """An init that returns the params given (every configuration starts there)."""

    def __init__(self, params):
        self.params = params

    def __call__(self, key):
        return jax.tree.map(jnp.asarray, self.params)


def _result(prog, state, data, model, inits, keys, optimizer, fixed: dict) -> SearchResult:
    table = fetch(
        {
            "drawn": state.drawn,
            "reached": state.reached,
            "curve": state.curve,
            "status": state.status,
            "epochs": state.epochs,
            "best": state.best,
            "parent": state.parent,
            "champion": state.champion_id,
        }
    )
    space_ = dict(prog.space)
    values = {name: dist.values(table["drawn"][name]) for name, dist in space_.items()}
    reached = table["reached"]
    last_rung = np.where(reached.any(axis=1), reached.shape[1] - 1 - np.argmax(reached[:, ::-1], axis=1), -1)
    rows = []
    for i in range(prog.n):
        best = float(table["best"][i])
        rows.append(
            {
                "id": i,
                "config": {name: values[name][i] for name in space_},
                "rung": int(last_rung[i]),
                "epochs": int(table["epochs"][i]),
                "score": best * prog.sign if math.isfinite(best) else float("nan"),
                "status": _search.STATUS[int(table["status"][i])],
                "parent": int(table["parent"][i]),
            }
        )
    finished_first = lambda i: (rows[i]["status"] != "finished", -rows[i]["rung"], float(table["best"][i]), i)
    order = sorted(range(prog.n), key=finished_first)
    champion = int(table["champion"])
    best_params = _trained_params(prog, state.champion) if champion >= 0 else None
    replay = _Replay(rows, data, model, inits, keys, optimizer, fixed)
    best_config = rows[champion]["config"] if champion >= 0 else None
    return SearchResult(best_config, best_params, [rows[i] for i in order], table["curve"], prog.monitor, replay)


def _trained_params(prog, variables):
    """The champion's variables as the model given takes them (no search values)."""
    params, state = _models.split_variables(prog.plan.apply_fn, variables)
    searched = {"dropout_rate", *(name for name, _ in prog.space)}
    state = {k: v for k, v in (state or {}).items() if k not in searched}
    return params if not state else {"params": params, **state}


@dataclasses.dataclass(frozen=True)
class _Replay:
    """``fit``'s keywords that retrain one trial alone."""

    rows: list
    data: object
    model: object
    inits: object  # every configuration's initial variables, stacked
    keys: jax.Array
    optimizer: optim.Optimizer
    fixed: dict

    def __call__(self, i: int) -> dict:
        row = self.rows[i]
        if row["parent"] >= 0:
            raise ValueError(
                f"trial {i} continued trial {row['parent']}'s state with new values (PBT): no single fit retrains "
                "it; replay the population's first members"
            )
        config, model = row["config"], self.model
        spec = _mlp_spec(model)
        if spec is not None and ("width" in config or "dropout" in config):
            hidden = [int(config["width"])] * (len(spec["sizes"]) - 2) if "width" in config else spec["sizes"][1:-1]
            model = _rebuild(spec, hidden, config.get("dropout", spec.get("dropout") or 0.0))
        data, start = self.data, jax.tree.map(lambda a: a[i], self.inits)
        if "width" in config:  # the narrow network's part of the masked one
            shapes = jax.eval_shape(model.init, self.keys[i])
            start = jax.tree.map(lambda a, s: a[tuple(slice(0, n) for n in s.shape)], start, shapes)
        own = {
            n: jnp.float32(v)
            for n, v in config.items()
            if n not in ("width", "dropout", *optim.HYPERPARAMS[self.optimizer.name])
        }
        if own:  # the model reads them from its variables
            start = {**start, **own}
        validation = (
            None if data.x_val is None else tuple(v for v in (data.x_val, data.y_val, data.w_val) if v is not None)
        )
        hyper = {n: v for n, v in config.items() if n in optim.HYPERPARAMS[self.optimizer.name]}
        return dict(
            model=model,
            params=start,
            x=data.x,
            y=data.y,
            key=self.keys[i],
            optimizer=optim.Optimizer(self.optimizer.name, {**self.optimizer.hyperparams, **hyper}),
            epochs=max(row["epochs"], 1),
            validation=validation,
            sample_weight=data.w,
            progress=False,
            **self.fixed,
        )
