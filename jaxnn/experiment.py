"""The runner behind the scripts in ``experiments/``: a typed config, one training
run, and a run folder that is enough to read, compare, reproduce and resume it.

A run folder holds ``config.json``, ``metrics.csv`` (one row per epoch),
``summary.json``, ``environment.json``, ``loss.png``, ``confusion.png`` for
classification, and ``checkpoints/``. ``main(argv, defaults)`` is the command line
every experiment script shares. The scripts hold only their default config.
"""

import argparse
import csv
import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import numpy as np

from jaxnn import checkpoint, data, distributed, metrics, optim, rng
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.losses import get_loss
from jaxnn.mlp import mlp
from jaxnn.train import fit, plot_history, predict
from jaxnn.types import Checkpoints, FitResult

Task = Literal["regression", "binary", "multiclass"]


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

    def __post_init__(self):
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
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        raw = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"config.json has unknown fields {sorted(unknown)}")
        for f in ("hidden", "metrics"):
            if f in raw:
                raw[f] = tuple(raw[f])
        return cls(**raw)


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


def run(
    config: ExperimentConfig, out: str | Path | None = None, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Trains the config's model and writes its run folder.

    Args:
      config: the experiment.
      out: the run folder; default ``runs/<name>-<timestamp>``.
      resume: continue from the newest checkpoint in ``out/checkpoints``.
      progress: show a progress bar.
    """
    folder = Path(out) if out is not None else Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    writer = distributed.is_main_process()  # in a multi-process run, process 0 writes the folder
    if resume:
        saved = ExperimentConfig.from_json((folder / "config.json").read_text())
        if saved != config:
            raise ValueError(f"--resume: {folder}/config.json differs from this run's config")
    split = load_split(config)
    if config.batch_size > len(split.x_train):  # before the run folder exists
        raise ValueError(f"batch_size={config.batch_size} is more than the {len(split.x_train)} training rows")
    if writer:
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "config.json", dataclasses.asdict(config))
        _write_json(folder / "environment.json", environment())
    model, result, wall = _train(config, split, folder / "checkpoints", resume, progress)
    summary, pred = _summary(config, split, model, result, wall)
    if writer:
        _write_json(folder / "summary.json", summary)
        atomic_text(folder / "metrics.csv", _metrics_csv(result.history))
        _save_plots(folder, result, config, split, pred)
    return RunResult(config, folder, summary, result)


def _train(config: ExperimentConfig, split: Split, ckpt_dir: Path, resume: bool, progress: bool):
    """``(model, fit result, wall seconds)``: the config's network trained on this
    process's rows (all of them in a one-process run)."""
    mine = distributed.local_rows(len(split.x_train))
    n_out = len(split.classes) if config.task == "multiclass" else 1
    model = mlp([split.x_train.shape[1], *config.hidden, n_out], config.activation, config.output_activation)
    root = jax.random.key(config.seed)
    start = time.perf_counter()
    result = fit(
        model,
        model.init(rng.stream(root, "init")),
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
            ckpt_dir, config.checkpoint_every or None, metadata={"config": dataclasses.asdict(config)}
        ),
        resume=ckpt_dir if resume else None,
    )
    jax.block_until_ready(result.params)
    return model, result, time.perf_counter() - start


def _summary(config: ExperimentConfig, split: Split, model, result: FitResult, wall: float):
    """The run's ``summary.json`` and its test predictions."""
    pred = np.asarray(predict(model, distributed.fetch(result.params), split.x_test))
    summary = {
        "name": config.name,
        "test_loss": float(get_loss(config.loss)(pred, split.y_test)),
        **{f"test_{m}": float(metrics.get_metric(m)[1](pred, split.y_test)) for m in config.metrics},
        "epochs_run": result.epochs_run,
        "stop_reason": result.stop_reason.name.lower(),
        "wall_time_s": wall,
        "samples_per_s": result.epochs_run * len(split.x_train) / wall,
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
    the script's default (shown in --help)."""
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
    ap.add_argument("--out", help="run folder (default: runs/<name>-<timestamp>)")
    ap.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    ap.add_argument("--from-run", metavar="DIR", help="rerun DIR's config.json (into a new folder)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


_OVERRIDES = ("epochs", "batch_size", "learning_rate", "hidden", "seed", "checkpoint_every", "optimizer")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def config_from_args(args, defaults: ExperimentConfig) -> ExperimentConfig:
    """The config a command line asks for: a saved run's (``--resume``/``--from-run``)
    or the defaults with the given flags applied."""
    if args.resume or args.from_run:
        folder = Path(args.resume or args.from_run)
        return ExperimentConfig.from_json((folder / "config.json").read_text())
    given = {f: getattr(args, f) for f in _OVERRIDES if getattr(args, f) is not None}
    return dataclasses.replace(defaults, **given)


def main(argv: list[str] | None, defaults: ExperimentConfig, description: str = "") -> RunResult:
    """Parses the command line, runs the experiment, prints the summary."""
    args = parser(defaults, description).parse_args(argv)
    try:  # a bad flag, config or run folder: a message, not a traceback
        config = config_from_args(args, defaults)
        result = run(config, args.resume or args.out, resume=bool(args.resume), progress=not args.no_progress)
    except (OSError, ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"run folder: {result.folder}")
    print(json.dumps(result.summary, indent=2))
    return result
