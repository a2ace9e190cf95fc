"""The runner behind the scripts in ``experiments/``: a typed config, one training
run, and a run folder that is enough to read, compare, reproduce and resume it.

A run folder holds ``config.json``, ``run.json``, ``metrics.csv`` (one row per epoch),
``summary.json``, ``environment.json``, ``loss.png``, ``confusion.png`` for
classification, ``checkpoints/``, and ``tensorboard/`` (event files, when the
tensorboard package is installed: the ``examples`` extra installs it). ``main(argv, defaults)`` is the command line
every experiment script shares. The scripts hold only their default config.
"""

import argparse
import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import numpy as np

from jaxnn import checkpoint, data, distributed, metrics, optim, rng
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.losses import get_loss
from jaxnn.mlp import NORMS, mlp
from jaxnn.train import fit, plot_history, predict
from jaxnn.types import Checkpoints, FitResult

Task = Literal["regression", "binary", "multiclass"]


MAX_SEED = 2**63 - 1  # jax.random.key takes an int64


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run. Saved as ``config.json``; ``--from-run`` reads it back."""

    name: str
    dataset: str  # "seed" (the seed's 1000 x 3 regression) or a bundled dataset name
    task: Task
    loss: str
    output_activation: str | None = None
    hidden: tuple[int, ...] = (4, 4)
    activation: str = "relu"
    metrics: tuple[str, ...] = ()
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch_size: int = 1
    epochs: int = 50
    seed: int = 0
    test_fraction: float = 0.2
    standardize: bool = True  # features (and a bundled regression target) by training statistics
    checkpoint_every: int = 0  # 0: a checkpoint at the end only
    dropout: float = 0.0  # after each hidden layer, in training
    norm: str | None = None  # "batch" or "layer" normalisation in each hidden layer

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), _KINDS[field.name]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind not in (bool, object)):
                raise TypeError(f"config field {field.name} must be {_KIND_NAMES[kind]}, got {value!r:.80}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise ValueError(f"name must be a plain name (letters, digits, . _ -; no path), got {self.name!r:.80}")
        if self.dataset != "seed" and self.dataset not in data.DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected 'seed' or one of {list(data.DATASETS)}")
        if self.task not in ("regression", "binary", "multiclass"):
            raise ValueError(f"task must be regression, binary or multiclass, got {self.task!r}")
        get_loss(self.loss)
        for m in self.metrics:
            metrics.get_metric(m)
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {list(optim.OPTIMIZERS)}")
        optim.check_learning_rate(self.learning_rate)
        if not self.hidden:
            raise ValueError(f"hidden must be one or more sizes >= 1, got {self.hidden}")
        for h in self.hidden:
            positive_int(h, "each hidden size")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.epochs, "epochs", MAX_EPOCHS)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in (None, *NORMS):
            raise ValueError(f"norm must be null or one of {list(NORMS)}, got {self.norm!r}")

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"config.json must hold one object of fields, got {type(raw).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"config.json has unknown fields {sorted(unknown)}")
        for f in ("hidden", "metrics"):
            if isinstance(raw.get(f), list):
                raw[f] = tuple(raw[f])
        return cls(**raw)


_KINDS = {
    **dict.fromkeys(("name", "dataset", "task", "loss", "activation", "optimizer"), str),
    **dict.fromkeys(("output_activation", "norm"), str | None),
    "hidden": tuple,
    "metrics": tuple,
    **dict.fromkeys(("batch_size", "epochs", "seed", "checkpoint_every"), int),
    **dict.fromkeys(("learning_rate", "test_fraction", "dropout"), int | float),
    "standardize": bool,
}
_KIND_NAMES = {str: "a string", str | None: "a string or null", tuple: "a list", int: "an int",
               int | float: "a number", bool: "true or false"}  # fmt: skip

# On --resume (and fit's resume=), the run's identity stays; its schedule is the call's.
KEPT_ON_RESUME = ("name", "dataset", "task", "loss", "output_activation", "hidden", "activation", "metrics",
                  "optimizer", "seed", "test_fraction", "standardize", "dropout", "norm")  # fmt: skip
TAKEN_ON_RESUME = ("epochs", "learning_rate", "batch_size", "checkpoint_every")


class Split(NamedTuple):
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    classes: list[str]


def load_split(config: ExperimentConfig) -> Split:
    """The config's data, split (and standardised on the training part) with its seed."""
    root = jax.random.key(config.seed)
    if config.dataset == "seed":
        x, y = data.make_regression(rng.stream(root, "dataset"))
        classes = []
    else:
        ds = data.load_dataset(config.dataset)
        x, y, classes = ds.x, ds.y, ds.target_names
        if config.task == "binary":
            y = y[:, None].astype(np.float32)  # a sigmoid output and binary cross-entropy want (n, 1)
    xtr, xte, ytr, yte = data.train_test_split(rng.stream(root, "test_split"), x, y, config.test_fraction)
    if config.standardize:
        xtr, xte = data.standardize(xtr, xte)
        if config.task == "regression" and config.dataset != "seed":  # the seed's target is in (0, 1) already
            ytr, yte = data.standardize(ytr, yte)  # so errors read in standard deviations of the target
    return Split(xtr, xte, ytr, yte, classes)


class RunResult(NamedTuple):
    config: ExperimentConfig
    folder: Path
    summary: dict
    fit: FitResult


def default_folder(config: ExperimentConfig) -> Path:
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunFolderError(ValueError):
    """A run folder cannot be used for this run (checked before anything is written)."""


_OUTPUTS = ("config.json", "run.json", "environment.json", "summary.json", "metrics.csv", "loss.png", "confusion.png")


def run(
    config: ExperimentConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    build=None,
) -> RunResult:
    """Trains the config's model and writes its run folder.

    Every check (the config, the data, the folder) happens before anything is written.
    The folder belongs to one run: ``run.json`` holds its id (in every checkpoint too)
    and the resumes it went through, and the folder is locked while it trains.

    Args:
      config: the experiment.
      out: the run folder; default ``runs/<name>-<timestamp>``.
      resume: continue the run in ``out`` from its newest checkpoint. The fields in
        ``KEPT_ON_RESUME`` must equal the folder's ``config.json``; those in
        ``TAKEN_ON_RESUME`` (epochs, learning rate, batch size, checkpoint interval)
        are this config's, and the changes are recorded in ``run.json``.
      overwrite: start a new run in a folder that holds another one (its checkpoints
        and outputs are deleted); without it, that is an error.
      progress: show a progress bar.
      build: ``build(config, n_in, n_out, key) -> (model, variables)``, the network
        to train (any model ``fit`` takes); default :func:`build_mlp`.

    Raises:
      RunFolderError: the folder holds another run, is in use, cannot be written, or
        (resuming) holds no run to resume or one with another identity.
    """
    folder = Path(out) if out is not None else default_folder(config)
    split = load_split(config)
    if config.batch_size > len(split.x_train):  # before the run folder exists
        raise ValueError(f"batch_size={config.batch_size} is more than the {len(split.x_train)} training rows")
    writer = distributed.is_main_process()  # in a multi-process run, process 0 writes the folder
    record = _resume_record(folder, config) if resume else {"run_id": checkpoint.new_run_id(), "resumes": []}
    with _claim(folder, resume, overwrite) if writer else contextlib.nullcontext():
        if writer:
            _write_json(folder / "config.json", dataclasses.asdict(config))
            _write_json(folder / "environment.json", environment())
            _write_json(folder / "run.json", record)
        resumed_at = record["resumes"][-1]["from_epoch"] if resume else 0
        ckpt = folder / "checkpoints"
        model, result, wall = _train(config, split, ckpt, resume, overwrite, record, progress, build or build_mlp)
        summary, pred = _summary(config, split, model, result, wall, result.epochs_run - resumed_at)
        if writer:
            _write_json(folder / "summary.json", summary)
            atomic_text(folder / "metrics.csv", _metrics_csv(result.history))
            _save_plots(folder, result, config, split, pred)
    return RunResult(config, folder, summary, result)


def _resume_record(folder: Path, config: ExperimentConfig) -> dict:
    """``run.json`` of the run in ``folder``, with this resume appended; checks that
    ``config`` keeps what a resumed run keeps."""
    try:
        saved = ExperimentConfig.from_json((folder / "config.json").read_text())
        record = json.loads((folder / "run.json").read_text())
        ckpt = checkpoint.latest(folder / "checkpoints")
        meta = checkpoint.read_metadata(ckpt)
    except (OSError, ValueError, TypeError) as e:
        raise RunFolderError(f"--resume: {folder} holds no run to resume ({e})") from None
    if (
        not isinstance(record, dict)
        or record.get("run_id") != meta.get("run_id")
        or not isinstance(record.get("resumes"), list)
    ):
        raise RunFolderError(f"--resume: {folder}/run.json does not name the run of {ckpt}")
    for name in KEPT_ON_RESUME:
        if getattr(saved, name) != getattr(config, name):
            raise RunFolderError(
                f"--resume: {name} is {getattr(saved, name)!r} in {folder}/config.json and cannot change "
                f"(got {getattr(config, name)!r}); start a new run from it with --from-run {folder}"
            )
    changed = {n: [getattr(saved, n), getattr(config, n)] for n in TAKEN_ON_RESUME}
    changed = {n: pair for n, pair in changed.items() if pair[0] != pair[1]}
    resumes = [*record["resumes"], {"from_epoch": meta.get("epoch", 0), "changed": changed}]
    return {"run_id": record["run_id"], "resumes": resumes}


@contextlib.contextmanager
def _claim(folder: Path, resume: bool, overwrite: bool):
    """Creates and locks ``folder`` for this run, while the run lasts. A new run into a
    folder that holds another run's files is refused unless ``overwrite`` (then its
    outputs go; fit deletes its checkpoints)."""
    try:
        checkpoint.make_folder(folder, "the run folder")
        lock = checkpoint.lock_folder(folder)
    except OSError as e:
        raise RunFolderError(str(e)) from None
    try:
        if not resume:
            held = [p.name for p in map(folder.joinpath, _OUTPUTS) if p.exists()]
            held += [f"checkpoints/{p.name}" for p in (folder / "checkpoints").glob(f"*{checkpoint.SUFFIX}")]
            held += ["tensorboard/"] if (folder / "tensorboard").exists() else []
            if held and not overwrite:
                raise RunFolderError(
                    f"{folder} holds another run ({', '.join(held[:4])}); continue it with --resume {folder}, "
                    "choose another --out, or pass --overwrite to replace it"
                )
            for name in _OUTPUTS:
                (folder / name).unlink(missing_ok=True)
            shutil.rmtree(folder / "tensorboard", ignore_errors=True)  # the other run's logs
        yield
    finally:
        os.close(lock)


def build_mlp(config: ExperimentConfig, n_in: int, n_out: int, key: jax.Array):
    """The runner's default network: ``(jaxnn.mlp(...), its initial variables)``."""
    sizes = [n_in, *config.hidden, n_out]
    model = mlp(sizes, config.activation, config.output_activation, dropout=config.dropout, norm=config.norm)
    return model, model.init(key)


def _train(config, split: Split, ckpt_dir: Path, resume: bool, overwrite: bool, record: dict, progress: bool, build):
    """``(model, fit result, wall seconds)``: the config's network trained on this
    process's rows (all of them in a one-process run)."""
    mine = distributed.local_rows(len(split.x_train))
    n_out = len(split.classes) if config.task == "multiclass" else 1
    root = jax.random.key(config.seed)
    model, variables = build(config, split.x_train.shape[1], n_out, rng.stream(root, "init"))
    meta = {"config": dataclasses.asdict(config)}
    start = time.perf_counter()
    result = fit(
        model,
        variables,
        split.x_train[mine],
        split.y_train[mine],
        loss=config.loss,
        key=root,
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation=(split.x_test, split.y_test),
        metrics=config.metrics,
        progress=progress,
        checkpoints=Checkpoints(
            ckpt_dir, config.checkpoint_every or None, metadata=meta, overwrite=overwrite, run_id=record["run_id"]
        ),
        resume=ckpt_dir if resume else None,
        log_dir=ckpt_dir.parent / "tensorboard" if importlib.util.find_spec("tensorboard") else None,
    )
    jax.block_until_ready(result.params)
    return model, result, time.perf_counter() - start


def _summary(config: ExperimentConfig, split: Split, model, result: FitResult, wall: float, trained: int):
    """The run's ``summary.json`` and its test predictions; ``trained``: the epochs
    this process trained (the rest came from a checkpoint)."""
    pred = np.asarray(predict(model, distributed.fetch(result.params), split.x_test))
    summary = {
        "name": config.name,
        "test_loss": float(get_loss(config.loss)(pred, split.y_test)),
        **{f"test_{m}": float(metrics.get_metric(m)[1](pred, split.y_test)) for m in config.metrics},
        "epochs_run": result.epochs_run,
        "epochs_trained_now": trained,
        "stop_reason": result.stop_reason.name.lower(),
        "wall_time_s": wall,
        "samples_per_s": trained * len(split.x_train) / wall,
        "processes": jax.process_count(),
    }
    return summary, pred


def environment() -> dict:
    """Versions and hardware, for environment.json."""
    import flax
    import jaxlib
    import optax

    import jaxnn

    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "flax": flax.__version__,
        "jaxnn": jaxnn.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
    }


def atomic_text(path: Path, text: str) -> None:
    checkpoint.atomic_write(path, text.encode())


def _write_json(path: Path, obj) -> None:
    atomic_text(path, json.dumps(obj, indent=2) + "\n")


def _metrics_csv(history: dict) -> str:
    buf = io.StringIO()
    names = ["epoch"] + [k for k in history if k != "epoch"]
    w = csv.writer(buf)
    w.writerow(names)
    for i in range(len(history["epoch"])):
        w.writerow([int(history["epoch"][i])] + [f"{float(history[k][i]):.6g}" for k in names[1:]])
    return buf.getvalue()


def _save_plots(folder: Path, result: FitResult, config: ExperimentConfig, split: Split, pred) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_history(result.history)
    fig.axes[0].set_title(f"{config.name}: {config.loss}, batch size {config.batch_size}")
    _save_fig(fig, folder / "loss.png")
    plt.close(fig)
    if config.task != "regression":
        fig = confusion_figure(split.y_test, pred, split.classes)
        _save_fig(fig, folder / "confusion.png")
        plt.close(fig)


def _save_fig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    checkpoint.atomic_write(path, buf.getvalue())


def confusion_matrix(y_true, pred, n_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` for labels and model outputs."""
    t = np.asarray(y_true).reshape(len(y_true), -1)[:, 0].astype(int)
    p = np.asarray(metrics.predicted_classes(pred))
    out = np.zeros((n_classes, n_classes), int)
    np.add.at(out, (t, p), 1)
    return out


def confusion_figure(y_true, pred, classes: list[str]):
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y_true, pred, len(classes))
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def parser(defaults: ExperimentConfig, description: str = "") -> argparse.ArgumentParser:
    """The command line shared by every experiment script. A flag left out keeps
    the script's default (shown in --help), or the resumed or rerun run's value."""
    ap = argparse.ArgumentParser(
        description=description or f"jaxnn experiment: {defaults.name}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags = [
        ("--epochs", int, "epochs"),
        ("--batch-size", int, "batch_size"),
        ("--learning-rate", float, "learning_rate"),
        ("--hidden", _sizes, "hidden"),
        ("--seed", int, "seed"),
        ("--checkpoint-every", int, "checkpoint_every"),
    ]
    for flag, kind, field in flags:
        ap.add_argument(flag, type=kind, help=f"default: {getattr(defaults, field)}")
    ap.add_argument("--optimizer", choices=optim.OPTIMIZERS, help=f"default: {defaults.optimizer}")
    ap.add_argument("--dropout", type=float, help=f"dropout rate after each hidden layer; default: {defaults.dropout}")
    ap.add_argument("--norm", choices=NORMS, help=f"normalisation in each hidden layer; default: {defaults.norm}")
    ap.add_argument("--out", help="run folder (default: runs/<name>-<timestamp>)")
    ap.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    ap.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint; takes --epochs, "
        "--learning-rate, --batch-size and --checkpoint-every, and refuses the flags that define the run"
    )  # fmt: skip
    ap.add_argument("--from-run", metavar="DIR", help="rerun DIR's config.json, with any flags applied, as a new run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


_OVERRIDES = ("epochs", "batch_size", "learning_rate", "hidden", "seed", "checkpoint_every", "optimizer", "dropout",
              "norm")  # fmt: skip


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def config_from_args(args, defaults: ExperimentConfig) -> ExperimentConfig:
    """The config a command line asks for: the given flags applied to the defaults, or
    to a saved run's ``config.json`` (``--from-run``, ``--resume``). With ``--resume``
    a flag that defines the run (``KEPT_ON_RESUME``), ``--out`` or ``--overwrite`` is an error."""
    if args.resume and args.from_run:
        raise ValueError("--resume continues a run and --from-run starts a new one: give one of them")
    given = {f: getattr(args, f) for f in _OVERRIDES if getattr(args, f) is not None}
    if args.resume:
        refused = [f"--{f.replace('_', '-')}" for f in given if f not in TAKEN_ON_RESUME]
        refused += [flag for flag, on in (("--out", args.out), ("--overwrite", args.overwrite)) if on]
        if refused:
            raise ValueError(
                f"--resume continues the run in {args.resume} as it was defined; {', '.join(refused)} cannot "
                f"change (only --epochs, --learning-rate, --batch-size, --checkpoint-every can). To start a new "
                f"run from it with other settings: --from-run {args.resume} {' '.join(refused)} ..."
            )
    if args.resume or args.from_run:
        folder = Path(args.resume or args.from_run)
        try:
            text = (folder / "config.json").read_text()
        except OSError as e:
            raise ValueError(f"{folder} holds no run: cannot read config.json ({e.strerror})") from None
        defaults = ExperimentConfig.from_json(text)
    return dataclasses.replace(defaults, **given)


def main(argv: list[str] | None, defaults: ExperimentConfig, description: str = "", build=None) -> RunResult:
    """Parses the command line, runs the experiment, prints the summary.

    Exit status: 2 with ``error: ...`` for a bad flag, config or run folder (before
    anything is written); 1 for an error while training (e.g. a full disk); 130 on
    Ctrl-C, saying where the newest checkpoint is and the command that resumes it.
    """
    ap = parser(defaults, description)
    args = ap.parse_args(argv)
    with exits(ap) as current:
        config = config_from_args(args, defaults)
        current.append(Path(args.resume or args.out or default_folder(config)))
        result = run(
            config,
            current[-1],
            resume=bool(args.resume),
            overwrite=args.overwrite,
            progress=not args.no_progress,
            build=build,
        )
    print(f"run folder: {result.folder}")
    print(json.dumps(result.summary, indent=2))
    return result


@contextlib.contextmanager
def exits(ap: argparse.ArgumentParser):
    """A command line's exits around its work: 2 with ``error: ...`` for a bad flag,
    config or folder; 1 for an ``OSError`` while training; 130 on Ctrl-C, with the
    command that resumes the run folder last appended to the yielded list."""
    folders = []
    try:
        yield folders
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(interrupted_message(folders[-1]) if folders else "\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None


def interrupted_message(folder: Path) -> str:
    """What Ctrl-C prints: the newest checkpoint and the command that resumes from it."""
    try:
        newest = checkpoint.latest(folder / "checkpoints")
        epoch = checkpoint.read_metadata(newest).get("epoch")
    except checkpoint.CheckpointError:
        return (
            f"\ninterrupted before the first checkpoint in {folder}/checkpoints: nothing to resume "
            "(--checkpoint-every N saves every N epochs)"
        )
    command = shlex.join(["python", sys.argv[0], "--resume", str(folder)])
    return f"\ninterrupted. The newest checkpoint is {newest} (epoch {epoch}). Continue with:\n  {command}"
