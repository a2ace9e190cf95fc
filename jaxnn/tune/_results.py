"""What a search leaves (private; ``jaxnn.tune._search`` is the API): the trials'
table, the winner refit on every row, the keywords that replay a trial alone, the
search's checkpoint and its TensorBoard logs.
"""

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _logs, _models, _optim, _programs, _saver, checkpoint, optim
from jaxnn.distributed import fetch
from jaxnn.mlp import Model, from_spec
from jaxnn.options import SearchResult, TrialStatus
from jaxnn.train import fit

# the names a jaxnn.mlp's own settings take in a space (not the optimizer's)
MODEL_NAMES = ("width", "depth", "activation", "dropout")


def mlp_spec(model) -> dict | None:
    spec = getattr(model, "spec", None)
    return (
        spec
        if isinstance(model, Model) and isinstance(spec, dict) and spec.get("kind") == "mlp"
        else None
    )


def refit(result: SearchResult, x, y, sample_weight):
    """The winner trained again alone on every row of ``x`` (its validation rows too,
    when they were a fraction of it), for the epochs it trained, from its own key;
    zero-padded to the model given."""
    keywords = result.replay(result.trials[0]["id"])
    keywords.update(
        x=x, y=y, sample_weight=sample_weight, validation=None, metrics=(), early_stopping=None
    )
    own = fit(**keywords).params
    kept = result.replay_keywords.kept(result.best_config)
    return _padded(kept, own, result.best_params)


def _pad(kept, params, like):
    if kept is not None:  # a shallower winner: its layers into theirs, the others as given
        layers = list(_layers(like))
        for i, layer in zip(kept, _layers(params), strict=True):
            layers[i] = layer
        params = _with_layers(like, layers)
    pad = lambda a, b: jnp.zeros_like(b).at[tuple(slice(0, s) for s in jnp.shape(a))].set(a)
    return jax.tree.map(pad, params, like)


def _layers(variables) -> list:
    return variables["params"] if isinstance(variables, dict) else variables


def _with_layers(variables, layers: list):
    return {**variables, "params": layers} if isinstance(variables, dict) else layers


def kept_layers(variables, kept: tuple | None):
    """The layers ``kept`` (indices) of an mlp's variables (all of them: ``None``)."""
    return (
        variables
        if kept is None
        else _with_layers(variables, [_layers(variables)[i] for i in kept])
    )


_padded = _programs.jit("search.pad", _pad)  # one program, not one per leaf


def result(prog, state, data, model, inits, keys, optimizer, fixed: dict) -> SearchResult:
    """The :class:`SearchResult` of a search that ended in ``state``."""
    table = fetch(
        {
            "drawn": state.drawn,
            "reached": state.reached,
            "curve": state.curve,
            "fold_curve": state.fold_curve,
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
    last_rung = np.where(
        reached.any(axis=1), reached.shape[1] - 1 - np.argmax(reached[:, ::-1], axis=1), -1
    )
    rows = []
    for i in range(prog.trials):
        best = float(table["best"][i])
        rows.append(
            {
                "id": i,
                "config": {name: values[name][i] for name in space_},
                "rung": int(last_rung[i]),
                "epochs": int(table["epochs"][i]),
                "score": best * prog.sign if math.isfinite(best) else float("nan"),
                "status": str(TrialStatus(int(table["status"][i]))),
                "parent": int(table["parent"][i]),
            }
        )
    champion = int(table["champion"])
    key = lambda i: (
        i != champion,
        rows[i]["status"] != "finished",
        -rows[i]["rung"],
        float(table["best"][i]),
        i,
    )
    order = sorted(range(prog.trials), key=key)  # the winner, then finished ones, best first
    best_params = trained_params(prog, state.champion) if champion >= 0 else None
    replay = Replay(rows, data, model, inits, keys, optimizer, fixed)
    best_config = rows[champion]["config"] if champion >= 0 else None
    return SearchResult(
        best_config,
        best_params,
        [rows[i] for i in order],
        table["curve"],
        prog.monitor,
        replay,
        fold_curves=table["fold_curve"] if prog.folds else None,
    )


def stopped_better(trials: list, sign: float) -> dict | None:
    """The best trial its early stopping stopped, when it scored better than every
    finished trial (``sign``: -1 where higher is better), else ``None``."""
    value = lambda row: row["score"] * sign
    stopped = [r for r in trials if r["status"] == "stopped" and math.isfinite(r["score"])]
    finished = [value(r) for r in trials if r["status"] == "finished" and math.isfinite(r["score"])]
    best = min(stopped, key=value, default=None)
    return best if best is not None and value(best) < min(finished, default=math.inf) else None


def trained_params(prog, variables):
    """The champion's variables as the model given takes them (no search values)."""
    params, state = _models.split_variables(prog.plan.apply_fn, variables)
    searched = {"dropout_rate", *(name for name, _ in prog.space)}
    state = {k: v for k, v in (state or {}).items() if k not in searched}
    return params if not state else {"params": params, **state}


def _trial(cut: tuple, inits, keys, i):
    """Trial ``i``'s initial params, and its key; ``cut``: ``(layers kept, shapes)``
    of a shallower or narrower network's (``None``: all)."""
    kept, shapes = cut
    start = kept_layers(jax.tree.map(lambda a: a[i], inits), kept)
    if shapes is not None:
        leaves, tree = jax.tree.flatten(start)
        cut = [a[tuple(slice(0, n) for n in s)] for a, s in zip(leaves, shapes, strict=True)]
        start = tree.unflatten(cut)
    return start, keys[i]


_trial_start = _programs.jit("search.trial", _trial)  # one program, not one per leaf


@dataclasses.dataclass(frozen=True)
class Replay:
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
        config = row["config"]
        model, narrow = self._own_model(config)
        data = self.data
        shapes = None if narrow is None else tuple(a.shape for a in jax.tree.leaves(narrow))
        cut = (self.kept(config), shapes)
        start, key = _trial_start(cut, self.inits, self.keys, np.int32(i))
        own = {
            n: jnp.float32(v)
            for n, v in config.items()
            if n not in (*MODEL_NAMES, "batch_size", *_optim.HYPERPARAMS[self.optimizer.name])
        }
        if own:  # the model reads them from its variables
            start = {**start, **own}
        validation = (
            None
            if data.x_val is None
            else tuple(v for v in (data.x_val, data.y_val, data.w_val) if v is not None)
        )
        hyper = {n: v for n, v in config.items() if n in _optim.HYPERPARAMS[self.optimizer.name]}
        return dict(
            model=model,
            params=start,
            x=data.x,
            y=data.y,
            key=key,
            optimizer=optim.Optimizer(self.optimizer.name, {**self.optimizer.hyperparams, **hyper}),
            epochs=max(row["epochs"], 1),
            validation=validation,
            sample_weight=data.w,
            progress=False,
            devices=1,  # as the search trained it (in a multi-process run: this process's own fit)
            **{
                **self.fixed,
                **({"batch_size": config["batch_size"]} if "batch_size" in config else {}),
            },
        )

    def kept(self, config: dict) -> tuple | None:
        """The layers of the model given that a ``depth`` trial uses (its first
        ``depth`` hidden ones and the output layer), or ``None``: all."""
        if "depth" not in config:
            return None
        return (*range(int(config["depth"])), len(mlp_spec(self.model)["sizes"]) - 2)

    def _own_model(self, config: dict):
        """The network a configuration trained as (a width or depth search's smaller
        mlp, with its dropout rate), and its variables' shapes where it is narrower
        (else ``None``)."""
        model, spec = self.model, mlp_spec(self.model)
        if spec is None or not any(n in config for n in MODEL_NAMES):
            return model, None
        hidden = spec["sizes"][1:-1]
        if "depth" in config:
            hidden = hidden[: int(config["depth"])]
        if "width" in config:
            hidden = [int(config["width"])] * len(hidden)
        sizes = [spec["sizes"][0], *(int(h) for h in hidden), spec["sizes"][-1]]
        dropout = config.get("dropout", spec.get("dropout") or 0.0)
        if isinstance(dropout, list | tuple):  # a rate per layer: the kept ones'
            dropout = list(dropout)[: len(hidden)]
        activation = config.get("activation", spec["activation"])
        model = from_spec({**spec, "sizes": sizes, "dropout": dropout, "activation": activation})
        if "width" not in config:
            return model, None
        # the narrow network's part of the masked one
        return model, jax.eval_shape(model.init, jax.ShapeDtypeStruct((), self.keys.dtype))

    def own(self, config: dict, params):
        """``(model, params)``: the network ``config`` trained as, and ``params`` (the
        search model's) cut to it; the units and layers cut are the masked and unused
        ones, so it predicts the same."""
        model, narrow = self._own_model(config)
        params = kept_layers(params, self.kept(config))
        if narrow is not None:
            cut = lambda s, a: a[tuple(slice(0, n) for n in s.shape)]
            params = jax.tree.map(cut, narrow, params)
        return model, params


def _name(fn) -> str:
    """A function's name that another process gives it too (``str(fn)`` has its address)."""
    if isinstance(fn, str):
        return fn
    if isinstance(fn, tuple):  # a (name, fn) pair
        return ",".join(map(_name, fn))
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    code = getattr(fn, "__code__", None)
    if code is not None:  # two lambdas of one module differ by their code
        name += ":" + hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
    return name


def _digest(*arrays) -> str:
    """The values (and shapes and dtypes) of the search's data."""
    h = hashlib.sha256()
    for a in arrays:
        a = None if a is None else np.ascontiguousarray(a)
        h.update(repr(None if a is None else (a.shape, a.dtype.str)).encode())
        if a is not None:
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def fingerprint(prog, key, loss, data: tuple, same: dict) -> str:
    """What makes two searches the same search (a resume must match it): the program,
    the key, the loss, the data's values (``data``: x, y, sample_weight and an explicit
    validation part) and the other keywords of the call (``same``: shuffle, tuning,
    early stopping, metrics)."""
    settings = [
        *(
            repr(v)
            for v in (prog.space, prog.schedule, prog.mlp_spec, prog.optimizer_names, prog.fixed)
        ),
        *(prog.trials, prog.slots, prog.buckets, prog.monitor, prog.folds, prog.chunk, _name(loss)),
        *(prog.plan.batch_size, prog.plan.n, prog.plan.n_val),
        np.asarray(jax.random.key_data(key)).tolist(),
        _digest(*data),
        sorted((k, [_name(m) for m in v] if k == "metrics" else repr(v)) for k, v in same.items()),
    ]
    return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()


def _check_table(path, s) -> None:
    """Raises unless every index and code of a restored search state is in range (an
    out-of-range trial id would never let the search end)."""
    n, epochs = s.status.shape[0], s.curve.shape[1]
    ranges = {
        "trial": (s.trial, -1, n - 1),
        "next": (s.next, 0, n),
        "taken": (s.taken, 0, n),
        "status": (s.status, min(TrialStatus), max(TrialStatus)),
        "epochs": (s.epochs, 0, epochs),
        "parent": (s.parent, -1, n - 1),
        "champion_id": (s.champion_id, -1, n - 1),
    }
    for name, (values, low, high) in ranges.items():
        values = np.asarray(fetch(values))
        if values.size and not ((values >= low) & (values <= high)).all():
            raise checkpoint.CheckpointError(
                f"{path}: the search's {name} holds values outside [{low}, {high}] "
                f"({values.min()} to {values.max()}); it is not a checkpoint this search wrote"
            )


def checkpointing(checkpoints, resume, fingerprint_) -> tuple:
    """``(file, saver, chunks)``: the search checkpoint a search resumes from (or
    ``None``), the ``jaxnn._saver.Saver`` of its checkpoints (or ``None``) and the
    chunks run before, all checked before any work. The saver is fit's: one lock,
    claim, ``keep``, ``metadata``, ``run_id`` and ``overwrite``; ``every`` sets the
    chunk; ``every_steps`` (within an epoch of a streamed fit) is refused.
    ``fingerprint_``: a function giving the search's fingerprint (hashing the data
    costs a pass over it, so it runs only with checkpoints or a resume)."""
    if checkpoints is None and resume is None:
        return None, None, 0
    if checkpoints is not None and checkpoints.every_steps is not None:
        raise ValueError(
            "checkpoints.every_steps saves within an epoch of a streamed fit; a search saves after "
            "each chunk of epochs: set checkpoints.every instead"
        )
    fingerprint = fingerprint_()
    file, meta = None, {}
    if resume is not None:
        if not isinstance(resume, str | os.PathLike):
            raise TypeError(
                f"search's resume must be a folder or file path of a search checkpoint, got {resume!r}"
            )
        file = checkpoint.latest(resume)
        meta = checkpoint.read_metadata(file)
        if meta.get("search") != fingerprint:
            raise ValueError(
                f"{file} holds another search (other settings, data or key), or a fit's checkpoint: "
                "resume a search with the same call that started it"
            )
    # the same search started again into its folder is this run, past where it starts
    same = lambda: fingerprint[:24]
    return _saver.saver_from(checkpoints, file, meta, {"search": fingerprint}, 0, same, "chunk")


def restore(file, state):
    """The search state in ``file`` (restored into ``state``'s shapes), its table
    checked, or ``state`` when ``file`` is ``None``."""
    if file is None:
        return state
    restored = checkpoint.restore(file, {"state": state})[0]["state"]
    _check_table(file, restored)
    return restored


def write_logs(folder, result: SearchResult) -> None:
    """TensorBoard: one run per trial (``trial-000``, ...) with its monitored value
    per epoch and, for the HParams view, its values, status, rung, epochs and parent."""
    rows = sorted(result.trials, key=lambda r: r["id"])
    hparams = {name: [r["config"][name] for r in rows] for name in rows[0]["config"]}
    hparams.update({k: [r[k] for r in rows] for k in ("status", "rung", "epochs", "parent")})
    log = _logs.EpochLog(Path(folder), hparams, [result.monitor], models=len(rows), run="trial")
    try:
        log.add({result.monitor: result.curves}, first_epoch=1)
    finally:
        log.close()
