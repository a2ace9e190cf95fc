"""One experiment run and its run folder (private)."""

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxnn import _files, checkpoint, distributed, metrics, optim, rng
from jaxnn.experiment._config import (
    KEPT_ON_RESUME,
    TAKEN_ON_RESUME,
    ExperimentConfig,
    Split,
    load_split,
)
from jaxnn.losses import get_loss
from jaxnn.mlp import mlp
from jaxnn.options import Checkpoints, FitResult
from jaxnn.train import check_fit, fit, plot_history, predict


class RunResult(NamedTuple):
    config: ExperimentConfig
    folder: Path
    summary: dict
    fit: FitResult


def default_folder(config: ExperimentConfig) -> Path:
    return Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunFolderError(ValueError):
    """A run folder cannot be used for this run (checked before anything is written)."""


_OUTPUTS = (
    "config.json",
    "run.json",
    "environment.json",
    "summary.json",
    "metrics.csv",
    "loss.png",
    "confusion.png",
    "trials.csv",
    "search.png",
    "search.json",
)


def run(
    config: ExperimentConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    build=None,
    extra_outputs=None,
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
      extra_outputs: ``extra_outputs(folder)`` writes more files into the folder
        while the run holds it (``--search``: the trials).

    Raises:
      RunFolderError: the folder holds another run, is in use, cannot be written, or
        (resuming) holds no run to resume or one with another identity.
    """
    folder = Path(out) if out is not None else default_folder(config)
    split = load_split(config)
    if config.batch_size > len(split.x_train):  # before the run folder exists
        raise ValueError(
            f"batch_size={config.batch_size} is more than the {len(split.x_train)} training rows"
        )
    writer = distributed.is_main_process()  # in a multi-process run, process 0 writes the folder
    record = (
        _resume_record(folder, config)
        if resume
        else {"run_id": checkpoint.new_run_id(), "resumes": []}
    )
    args = _fit_arguments(
        config, split, folder / "checkpoints", resume, overwrite, record, progress, build
    )
    # every check fit makes (the model, the data, a resume), nothing written
    check_fit(*args[:4], **args[4])
    with _claim(folder, resume, overwrite) if writer else contextlib.nullcontext():
        if writer:
            atomic_text(folder / "config.json", config.to_json())
            _write_json(folder / "environment.json", environment())
            _write_json(folder / "run.json", record)
        resumed_at = record["resumes"][-1]["from_epoch"] if resume else 0
        start = time.perf_counter()
        result = fit(*args[:4], **args[4])
        jax.block_until_ready(result.params)
        model, wall = args[0], time.perf_counter() - start
        summary, pred = _summary(config, split, model, result, wall, result.epochs_run - resumed_at)
        if writer:
            _write_json(folder / "summary.json", summary)
            atomic_text(folder / "metrics.csv", _metrics_csv(result.history))
            _save_plots(folder, result, config, split, pred)
            if extra_outputs is not None:
                extra_outputs(folder)
    return RunResult(config, folder, summary, result)


def _resume_record(folder: Path, config: ExperimentConfig) -> dict:
    """``run.json`` of the run in ``folder``, with this resume appended; checks that
    ``config`` keeps what a resumed run keeps."""
    try:
        saved = ExperimentConfig.from_json(
            _files.read_text(folder / "config.json", OSError, "a run's config.json")
        )
        record = json.loads(_files.read_text(folder / "run.json", OSError, "a run's run.json"))
        ckpt = checkpoint.latest(folder / "checkpoints")
        meta = checkpoint.read_metadata(ckpt)
    except (OSError, ValueError, TypeError, RecursionError) as e:
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
        _files.make_folder(folder, "the run folder")
        lock = _files.lock_folder(folder)
    except OSError as e:
        raise RunFolderError(str(e)) from None
    try:
        if not resume:
            check_free(folder, overwrite)
            for name in _OUTPUTS:
                (folder / name).unlink(missing_ok=True)
            shutil.rmtree(folder / "tensorboard", ignore_errors=True)  # the other run's logs
        yield
    finally:
        os.close(lock)


def check_free(folder: Path, overwrite: bool) -> None:
    """Raises unless ``folder`` holds no run, or ``overwrite`` allows replacing it."""
    held = [p.name for p in map(folder.joinpath, _OUTPUTS) if p.exists()]
    held += [
        f"checkpoints/{p.name}" for p in (folder / "checkpoints").glob(f"*{checkpoint.SUFFIX}")
    ]
    held += ["tensorboard/"] if (folder / "tensorboard").exists() else []
    if held and not overwrite:
        raise RunFolderError(
            f"{folder} holds another run ({', '.join(held[:4])}); continue it with --resume {folder}, "
            "choose another --out, or pass --overwrite to replace it"
        )


def build_mlp(config: ExperimentConfig, n_in: int, n_out: int, key: jax.Array):
    """The runner's default network: ``(jaxnn.mlp(...), its initial variables)``."""
    sizes = [n_in, *config.hidden, n_out]
    model = mlp(
        sizes, config.activation, config.output_activation, dropout=config.dropout, norm=config.norm
    )
    return model, model.init(key)


def _fit_arguments(
    config,
    split: Split,
    ckpt_dir: Path,
    resume: bool,
    overwrite: bool,
    record: dict,
    progress,
    build,
):
    """``(model, variables, x, y, fit keywords)`` of the config's run on this process's
    rows (all of them in a one-process run); building the network checks its sizes."""
    mine = distributed.local_rows(len(split.x_train))
    n_out = len(split.classes) if config.task == "multiclass" else 1
    root = jax.random.key(config.seed)
    model, variables = (build or build_mlp)(
        config, split.x_train.shape[1], n_out, rng.stream(root, "init")
    )
    meta = {"config": dataclasses.asdict(config)}
    keywords = dict(
        loss=config.loss,
        key=root,
        optimizer=optim.Optimizer(config.optimizer, {"learning_rate": config.learning_rate}),
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=True,
        validation=(split.x_val, split.y_val),  # chosen on: never the test rows
        metrics=config.metrics,
        early_stopping=None,
        sample_weight=None,
        progress=progress,
        checkpoints=Checkpoints(
            ckpt_dir,
            config.checkpoint_every or None,
            metadata=meta,
            overwrite=overwrite,
            run_id=record["run_id"],
        ),
        resume=ckpt_dir if resume else None,
        log_dir=ckpt_dir.parent / "tensorboard"
        if importlib.util.find_spec("tensorboard")
        else None,
        devices=None,
        tuning=None,
    )
    return model, variables, split.x_train[mine], split.y_train[mine], keywords


def _summary(
    config: ExperimentConfig, split: Split, model, result: FitResult, wall: float, trained: int
):
    """The run's ``summary.json`` and its test predictions; ``trained``: the epochs
    this process trained (the rest came from a checkpoint)."""
    pred = np.asarray(predict(model, distributed.fetch(result.params), split.x_test))
    summary = {
        "name": config.name,
        "test_loss": float(get_loss(config.loss)(pred, split.y_test)),
        **{
            f"test_{m}": float(metrics.get_metric(m)[1](pred, split.y_test)) for m in config.metrics
        },
        "epochs_run": result.epochs_run,
        "epochs_trained_now": trained,
        "stop_reason": result.stop_reason.name.lower(),
        **{f"{part}_rows": len(r) for part, r in split.rows.items()},
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
    _files.atomic_write(path, text.encode())


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


def _save_plots(
    folder: Path, result: FitResult, config: ExperimentConfig, split: Split, pred
) -> None:
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
    _files.atomic_write(path, buf.getvalue())


def confusion_matrix(y_true, pred, n_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` for labels and model outputs."""
    t = np.asarray(y_true).reshape(len(y_true), -1)[:, 0].astype(int)
    p = np.asarray(metrics.predicted_classes(pred))
    out = np.zeros((n_classes, n_classes), int)
    np.add.at(out, (t, p), 1)
    return out


def confusion_figure(y_true, pred, classes: list[str]):
    """A matplotlib figure of the confusion matrix: rows the true class, columns the
    predicted one. ``y_true``: integer labels (or one-hot rows) of ``n`` examples;
    ``pred``: the model's ``(n, classes)`` outputs (or ``(n, 1)`` for two classes);
    ``classes``: their names.

    Raises:
      ValueError: the sizes disagree, or a label or prediction is not a class.
    """
    import matplotlib.pyplot as plt

    n, k = len(y_true), len(classes)
    if k < 2 or n < 1 or len(pred) != n:
        raise ValueError(
            f"confusion_figure needs at least 2 class names and one prediction per label, got "
            f"{k} names, {n} labels and {len(pred)} predictions"
        )
    labels = np.asarray(y_true).reshape(n, -1)
    labels = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0]
    predicted = np.asarray(metrics.predicted_classes(pred))
    if not (0 <= labels.min() and labels.max() < k and predicted.max() < k):
        raise ValueError(f"labels and predictions must be classes in [0, {k}), one per name")
    cm = confusion_matrix(labels, pred, k)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig
