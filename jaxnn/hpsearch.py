"""Hyperparameter search inside the compiled program: ``jaxnn.search``.

Configurations drawn from a :mod:`jaxnn.space` train side by side in ``fit_many``'s
vmapped slots; the schedule's decisions (rank, promote, prune, refill) are made inside
the compiled chunk of epochs, so a search costs what its epochs cost, with one host
round trip per chunk. See ``docs/guides/search.md``.
"""

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _models, _search, _setup, optim, rng, space
from jaxnn._checks import MAX_ELEMENTS, MAX_EPOCHS, positive_int
from jaxnn.distributed import fetch
from jaxnn.mlp import MLPTrainApply, Model
from jaxnn.mlp import mlp as build_mlp
from jaxnn.options import EarlyStopping, Tuning

_NOT_OPTIMIZER = ("dropout", "width")


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving:
    """Successive halving with slot refill (ASHA with every slot advancing together).

    A trial trains ``min_epochs`` (the grace period), then at each rung (``min_epochs``
    times a power of ``eta``, up to ``max_epochs``) it is promoted if its best monitored
    value so far is in the top ``1/eta`` of the trials that reached that rung, else
    pruned; its slot takes the next configuration. A promoted trial trains on from its
    own params and optimizer state (never retrained)."""

    min_epochs: int = 1
    max_epochs: int = 27
    eta: int = 3

    def __post_init__(self):
        positive_int(self.min_epochs, "min_epochs", MAX_EPOCHS)
        positive_int(self.max_epochs, "max_epochs", MAX_EPOCHS)
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ValueError(f"eta must be an int >= 2, got {self.eta!r}")
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
    configurations are shared between brackets as Hyperband's budgets say."""

    def brackets(self, n: int) -> np.ndarray:
        r = len(self.rungs()) - 1
        weights = np.array([(r + 1) / (r - b + 1) * self.eta ** (r - b) for b in range(r + 1)])
        exact = weights / weights.sum() * n
        counts = np.floor(exact + 1e-9).astype(int)
        counts[np.argsort(counts - exact, kind="stable")[: n - counts.sum()]] += 1  # largest remainders
        return np.repeat(np.arange(r + 1, dtype=np.int32), counts)


Schedule = SuccessiveHalving  # (Hyperband is one)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found.

    Attributes:
      best_config: the winner's hyperparameters (``{name: value}``).
      best_params: the winner's trained params (for the model given: a width
        search's narrower winner is zero-padded, which predicts the same).
      trials: one row per configuration, best first: ``id``, ``config``, ``rung``
        (the last rung reached, -1: none), ``epochs`` trained, ``score`` (its best
        monitored value), ``status`` (finished, pruned, stopped, nan, pending) and
        ``parent``.
      curves: ``(configurations, epochs)`` monitored value per epoch (NaN: not trained).
      monitor: the name of the value ranked.
    """

    best_config: dict | None
    best_params: Any
    trials: list
    curves: np.ndarray
    monitor: str
    _replay: Callable = dataclasses.field(repr=False, default=None)

    def replay(self, i: int) -> dict:
        """The keywords of ``jaxnn.fit`` that retrain trial ``i`` alone, from its own
        key: ``jaxnn.fit(**result.replay(i))``."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < len(self.trials):
            raise ValueError(f"trial id must be an int in [0, {len(self.trials)}), got {i!r}")
        return self._replay(int(i))

    def __repr__(self) -> str:
        counts = {}
        for row in self.trials:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        best = self.trials[0]
        return (
            f"SearchResult({len(self.trials)} configurations: "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + f"; best {self.monitor}={best['score']:.4g} with {self.best_config})"
        )


def _check_space(space_: dict, model) -> tuple:
    if not isinstance(space_, dict) or not space_:
        raise TypeError("space must be a non-empty dict {name: jaxnn.space.loguniform(...) | uniform | choice}")
    for name, dist in space_.items():
        if not isinstance(name, str):
            raise TypeError(f"space's names must be strings, got {name!r}")
        if not isinstance(dist, space.Uniform | space.Choice):
            raise TypeError(f"space[{name!r}] must be jaxnn.space.loguniform/uniform/choice(...), got {dist!r}")
    if "width" in space_:
        _check_width(space_["width"], model)
    if "dropout" in space_:
        low = min(space_["dropout"].options) if isinstance(space_["dropout"], space.Choice) else space_["dropout"].low
        high = max(space_["dropout"].options) if isinstance(space_["dropout"], space.Choice) else space_["dropout"].high
        if not 0 <= low <= high < 1:
            raise ValueError(f"space['dropout'] must stay in [0, 1), got {space_['dropout']!r}")
    return tuple(sorted(space_.items()))


def _mlp_spec(model) -> dict | None:
    spec = getattr(model, "spec", None)
    return spec if isinstance(model, Model) and isinstance(spec, dict) and spec.get("kind") == "mlp" else None


def _check_width(dist, model) -> None:
    spec = _mlp_spec(model)
    if spec is None or len(spec["sizes"]) < 3:
        raise ValueError("space['width'] masks the hidden units of a jaxnn.mlp with hidden layers; got another model")
    if not isinstance(dist, space.Choice) or not all(float(w).is_integer() and w >= 1 for w in dist.options):
        raise ValueError(f"space['width'] must be jaxnn.space.choice of positive ints, got {dist!r}")
    if spec.get("norm") == "layer":
        raise ValueError("space['width'] cannot mask a layer-norm MLP (its statistics span every unit)")
    widest = min(spec["sizes"][1:-1])
    if max(dist.options) > widest:
        raise ValueError(f"the model's hidden layers ({widest} units) must hold the largest width {max(dist.options)}")
    rebuilt = _rebuild(spec, spec["sizes"][1:-1], spec.get("dropout") or 0.0)
    probe = jax.random.key(0)
    if not all(np.array_equal(a, b) for a, b in zip(*map(jax.tree.leaves, (model.init(probe), rebuilt.init(probe))))):
        raise ValueError(
            "space['width'] builds the narrower networks from model.spec, and this model's init differs from "
            "jaxnn.mlp's defaults (a custom initializer or dtype): build the model with the default init"
        )


def _rebuild(spec: dict, hidden, dropout) -> Model:
    sizes = [spec["sizes"][0], *(int(h) for h in hidden), spec["sizes"][-1]]
    return build_mlp(sizes, spec["activation"], spec["output_activation"], dropout=dropout, norm=spec.get("norm"))


def _optimizer(optimizer, space_: tuple, k: int) -> optim.Optimizer:
    """The optimizer value with the space's hyperparameters as per-slot placeholders
    (checked by ``jaxnn.optim``; the real values go into each slot's state)."""
    names = [n for n, _ in space_ if n not in _NOT_OPTIMIZER]
    if optimizer is None:
        optimizer = "momentum" if "momentum" in names else "sgd"
    if isinstance(optimizer, str):
        optimizer = optim.Optimizer(optimizer, {})
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"search's optimizer must be a name or a jaxnn.optim value, got {optimizer!r}")
    optim.check_name(optimizer.name)
    for name, dist in space_:
        if name in names:
            low = dist.options[0] if isinstance(dist, space.Choice) else dist.low
            optim.check_hyperparam(optimizer.name, name, low)
            high = dist.options[-1] if isinstance(dist, space.Choice) else dist.high
            optim.check_hyperparam(optimizer.name, name, high)
    placeholders = {n: np.full(k, (d.options[0] if isinstance(d, space.Choice) else d.low)) for n, d in space_}
    values = {**optimizer.hyperparams, **{n: placeholders[n] for n in names}}
    return optim.Optimizer(optimizer.name, values)


def _model_for_search(model, space_: dict):
    """The model the slots train: an mlp whose variables may carry its ``width``."""
    if "width" not in space_:
        return model
    apply = model.apply
    return Model(model.init, MLPTrainApply(apply.activations, apply.norm, apply.dropout), model.spec)


@jax.jit
def _trial_keys(key, ids):
    return jax.vmap(lambda i: jax.random.fold_in(rng.stream(key, "search"), i))(ids)


def draw(space_: tuple, keys: jax.Array) -> dict:
    """Each configuration's values (a choice's index) from its key's ``config`` stream."""

    def one(k):
        base = rng.stream(k, "config")
        return {name: dist.draw(jax.random.fold_in(base, j)) for j, (name, dist) in enumerate(space_)}

    return jax.jit(jax.vmap(one))(keys)


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
    schedule: SuccessiveHalving | None = None,
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
):
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
        ``dropout`` (an mlp built with dropout) and ``width`` (the hidden units of a
        ``jaxnn.mlp``; the model given holds the largest width).
      schedule: :class:`SuccessiveHalving` (default) or :class:`Hyperband`.
      num_configs: configurations drawn.
      slots: configurations trained at once (default ``ceil(num_configs / eta**2)``).
      validation: the held-out data the trials are ranked on, as in ``fit``.
      monitor: the recorded value ranked (default ``val_loss``, or ``loss``
        without validation); accuracy and r2 rank higher as better.
      optimizer: a name or a ``jaxnn.optim`` value (its fixed hyperparameters);
        default ``"momentum"`` when ``momentum`` is searched, else ``"sgd"``.
      early_stopping: each trial's own early stopping (status ``stopped``).
      progress: print a line per chunk: configurations started and slots alive.

    Returns:
      A :class:`SearchResult`.
    """
    schedule = SuccessiveHalving() if schedule is None else schedule
    if not isinstance(schedule, SuccessiveHalving):
        raise TypeError(f"schedule must be jaxnn.SuccessiveHalving(...) or jaxnn.Hyperband(...), got {schedule!r}")
    space_ = _check_space(space, model)
    if params is not None and "width" in space:
        raise ValueError("a width search starts each configuration from its own init: pass params=None")
    n = positive_int(num_configs, "num_configs", MAX_ELEMENTS)
    k = min(n, positive_int(slots, "slots", MAX_ELEMENTS) if slots is not None else math.ceil(n / schedule.eta**2))
    run = _setup.setup(
        _model_for_search(model, space), params, x, y, loss=loss, key=key, optimizer=_optimizer(optimizer, space_, k),
        batch_size=batch_size, epochs=schedule.max_epochs, shuffle=shuffle, validation=validation, metrics=metrics,
        early_stopping=early_stopping, sample_weight=sample_weight, checkpoints=None, resume=None, log_dir=None,
        devices=None, progress=False, tuning=tuning, num_models=k,
        dropout=np.zeros(k) if "dropout" in space else None, many=True,
    )  # fmt: skip
    monitor = _monitor(monitor, run.plan)
    spec = _mlp_spec(model)
    mlp_spec = ()
    if "width" in space:
        mlp_spec = (tuple(spec["sizes"]), spec["activation"], spec["output_activation"], 0.0, spec.get("norm"))
        if spec.get("dropout"):
            mlp_spec = (*mlp_spec[:3], tuple(spec["dropout"]), mlp_spec[4])
    init = model.init if params is None else (lambda _k, p=params: p)
    chunk = min(1 << (max(1, math.ceil(schedule.max_epochs / (10 if progress else 1))) - 1).bit_length(), 1024)
    prog = _search.Program(
        run.plan, init, mlp_spec, space_, tuple(n_ for n_, _ in space_ if n_ not in _NOT_OPTIMIZER),
        schedule.rungs(), schedule.eta, n, k, monitor, -1.0 if _higher_is_better(monitor) else 1.0, chunk,
    )  # fmt: skip
    run_key = _models_key(key)
    keys = _trial_keys(run_key, jnp.arange(n, dtype=jnp.uint32))
    drawn = draw(space_, keys)
    bracket = jnp.asarray(schedule.brackets(n))
    pool = (_search.run_inits(prog, keys, drawn), keys, drawn)
    state = _search.run_start(prog, pool)
    while True:
        state, status = _search.run_chunk(prog, state, run.data, pool, bracket)
        live, started = fetch(status)  # the one sync per chunk
        if progress:
            print(f"search: {int(started)}/{n} configurations started, {int(live)} slots alive", file=sys.stderr)
        if live == 0:
            break
    return _result(prog, state, run, model, params, keys, optimizer_of(optimizer, space_), dict(space_), locals_of(
        loss=loss, batch_size=run.plan.batch_size, shuffle=shuffle, metrics=metrics, early_stopping=early_stopping,
        tuning=tuning))  # fmt: skip


def locals_of(**kw) -> dict:
    return kw


def optimizer_of(optimizer, space_: tuple) -> optim.Optimizer:
    names = [n for n, _ in space_ if n not in _NOT_OPTIMIZER]
    if optimizer is None:
        optimizer = "momentum" if "momentum" in names else "sgd"
    return optim.Optimizer(optimizer, {}) if isinstance(optimizer, str) else optimizer


def _models_key(key):

    return _models.check_key(key)


def _higher_is_better(monitor: str) -> bool:
    return monitor.removeprefix("val_") in ("accuracy", "r2")


def _monitor(monitor, plan) -> str:
    from jaxnn._records import record_names

    names = record_names(plan)
    if monitor is None:
        return "val_loss" if "val_loss" in names else "loss"
    if monitor not in names:
        raise ValueError(f"monitor={monitor!r} is not recorded; expected one of {names}")
    return monitor


def _result(prog, state, run, model, params, keys, optimizer, space_: dict, fit_keywords: dict) -> SearchResult:
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
    values = {name: dist.values(table["drawn"][name]) for name, dist in space_.items()}
    rungs = np.where(
        table["reached"].any(axis=1), table["reached"].shape[1] - 1 - np.argmax(table["reached"][:, ::-1], axis=1), -1
    )
    rows = []
    for i in range(prog.n):
        score = float(table["best"][i]) * prog.sign if np.isfinite(table["best"][i]) else float("nan")
        rows.append(
            {
                "id": i,
                "config": {name: values[name][i] for name in space_},
                "rung": int(rungs[i]),
                "epochs": int(table["epochs"][i]),
                "score": score,
                "status": _search.STATUS[int(table["status"][i])],
                "parent": int(table["parent"][i]),
            }
        )
    order = sorted(range(prog.n), key=lambda i: (-rows[i]["rung"], float(table["best"][i]), i))
    champion = int(table["champion"])
    best_params = None
    if champion >= 0:
        best_params = jax.tree.map(jnp.asarray, _models_split(prog, state.champion))
    data = run.data

    def replay(i: int) -> dict:
        row = rows[i]
        config = row["config"]
        trained = model
        if "width" in config or "dropout" in config:
            spec = _mlp_spec(model)
            hidden = (
                [int(config.get("width", h)) for h in spec["sizes"][1:-1]] if "width" in config else spec["sizes"][1:-1]
            )
            trained = _rebuild(
                spec, hidden, float(config.get("dropout", 0.0)) if "dropout" in config else spec.get("dropout") or 0.0
            )
        start = params if params is not None else trained.init(rng.stream(keys[i], "init"))
        hyper = {**optimizer.hyperparams, **{n: v for n, v in config.items() if n not in _NOT_OPTIMIZER}}
        validation = (
            None if data.x_val is None else (data.x_val, data.y_val) + (() if data.w_val is None else (data.w_val,))
        )
        return dict(
            model=trained,
            params=start,
            x=data.x,
            y=data.y,
            key=keys[i],
            optimizer=optim.Optimizer(optimizer.name, hyper),
            epochs=max(row["epochs"], 1),
            validation=validation,
            sample_weight=data.w,
            progress=False,
            **fit_keywords,
        )

    best_config = rows[champion]["config"] if champion >= 0 else None
    return SearchResult(best_config, best_params, [rows[i] for i in order], table["curve"], prog.monitor, replay)


def _models_split(prog, variables):

    params, state = _models.split_variables(prog.plan.apply_fn, variables)
    if state:
        state = {k: v for k, v in state.items() if k not in ("width", "dropout_rate")}
    return params if not state else {"params": params, **state}
