"""``--search N`` (private): a hyperparameter search over the config's
``search_space`` with its ``search_schedule``, then the winner trained as a run.

The search ranks on the config's validation rows (never the test split); the winner's
values replace the config's (``learning_rate``, every hidden layer's width,
``dropout``, ``batch_size``) and that config trains as any run, into the same folder, which also gets
``trials.csv`` (one row per trial), ``search.png`` (each trial's monitored value
against epochs, pruned ones faded) and ``search.json`` (the winner and the settings).
"""

import csv
import dataclasses
import io
import json
from pathlib import Path

import jax
import numpy as np

from jaxnn import _files, optim
from jaxnn.experiment._config import ExperimentConfig, load_split, search_settings
from jaxnn.experiment._run import RunResult, check_free, run
from jaxnn.metrics import higher_is_better
from jaxnn.mlp import mlp
from jaxnn.options import SearchResult
from jaxnn.tune import search


def search_run(
    config: ExperimentConfig,
    folder: Path,
    num_configs: int,
    *,
    overwrite: bool,
    progress: bool,
) -> tuple[RunResult, SearchResult]:
    """Searches, then trains the winner's config into ``folder`` (see the module)."""
    space, schedule = search_settings(config)
    check_free(folder, overwrite)  # before the search's work
    split = load_split(config)
    hidden = config.hidden
    if "width" in space:
        widest = int(max(space["width"].options))
        hidden = (widest,) * len(config.hidden)
    n_out = len(split.classes) if config.task == "multiclass" else 1
    # a layer with a rate > 0 takes the searched rate
    rate = 0.5 if "dropout" in space else config.dropout
    model = mlp(
        [split.x_train.shape[1], *hidden, n_out],
        config.activation,
        config.output_activation,
        dropout=rate,
        norm=config.norm,
    )
    monitor = f"val_{config.metrics[0]}" if config.metrics else "val_loss"
    result = search(
        model,
        None,
        split.x_train,
        split.y_train,
        loss=config.loss,
        key=jax.random.key(config.seed),
        space=space,
        schedule=schedule,
        num_configs=num_configs,
        validation=(split.x_val, split.y_val),
        monitor=monitor,
        metrics=config.metrics,
        optimizer=optim.Optimizer(config.optimizer, {"learning_rate": config.learning_rate}),
        batch_size=None if "batch_size" in space else min(config.batch_size, len(split.x_train)),
        progress=progress,
        refit=False,
    )
    if result.best_config is None:
        raise ValueError(
            "--search: no configuration finished (every one diverged); narrow the search_space"
        )
    winner = dataclasses.replace(config, **_config_values(result.best_config, config))
    settings = {
        "num_configs": num_configs,
        "monitor": monitor,
        "winner": result.trials[0]["id"],
        "best_config": result.best_config,
        "space": config.search_space,
        "schedule": {**config.search_schedule, "max_epochs": config.epochs},
    }
    outputs = lambda f: write_search(f, result, settings, schedule.rungs())
    return run(
        winner, folder, overwrite=overwrite, progress=progress, extra_outputs=outputs
    ), result


def _config_values(best: dict, config: ExperimentConfig) -> dict:
    values = {}
    if "learning_rate" in best:
        values["learning_rate"] = float(best["learning_rate"])
    if "width" in best:
        values["hidden"] = (int(best["width"]),) * len(config.hidden)
    if "dropout" in best:
        values["dropout"] = float(best["dropout"])
    if "batch_size" in best:
        values["batch_size"] = int(best["batch_size"])
    return values


def trials_csv(result: SearchResult) -> str:
    """``trials.csv``: one row per trial, best first."""
    names = list(result.trials[0]["config"]) if result.trials else []
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["id", "status", "rung", "epochs", result.monitor, "parent", *names])
    for row in result.trials:
        values = [f"{row['config'][n]:.6g}" for n in names]
        out.writerow(
            [
                row["id"],
                row["status"],
                row["rung"],
                row["epochs"],
                f"{row['score']:.6g}",
                row["parent"],
                *values,
            ]
        )
    return buf.getvalue()


_LOOKS = {  # status: (colour, line width, opacity, legend label)
    "finished": ("C0", 1.5, 0.9, "finished"),
    "pruned": ("C7", 0.8, 0.35, "pruned at a rung"),
    "stopped": ("C1", 0.8, 0.5, "stopped early"),
}


def search_figure(result: SearchResult, rungs=()):
    """Each trial's monitored value against epochs, coloured by how it ended (PBT copies
    drawn from their parent's last epoch), the winner on top, dotted lines at the
    ``rungs`` (epochs) where trials are ranked, and a y range that shows the finishers;
    diverged trials are counted in the title, not drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.arange(1, result.curves.shape[1] + 1)
    by_id = {row["id"]: row for row in result.trials}
    for row in result.trials[::-1]:  # the best drawn last, on top
        if row["status"] not in _LOOKS:
            continue
        colour, width, alpha, _ = _LOOKS[row["status"]]
        curve = result.curves[row["id"]]
        first = 0 if row["parent"] < 0 else max(by_id[row["parent"]]["epochs"] - 1, 0)
        # a trial pruned at epoch 1 is a dot
        ax.plot(
            epochs[first:],
            curve[first:],
            lw=width,
            alpha=alpha,
            color=colour,
            marker="o",
            markersize=2.5,
        )
    for epoch in rungs[:-1]:
        ax.axvline(epoch, color="0.6", lw=0.8, ls=":")
    best = result.trials[0]
    ax.plot(epochs, result.curves[best["id"]], lw=2.5, color="C3")
    shown = {row["status"] for row in result.trials}
    handles = [
        Line2D([], [], color=c, lw=w, alpha=a, label=label)
        for s, (c, w, a, label) in _LOOKS.items()
        if s in shown
    ]
    handles.append(Line2D([], [], color="C3", lw=2.5, label=f"winner: trial {best['id']}"))
    if len(rungs) > 1:
        handles.append(Line2D([], [], color="0.6", lw=0.8, ls=":", label="rungs (ranked here)"))
    ax.legend(handles=handles, fontsize=8)
    finishers = result.curves[[r["id"] for r in result.trials if r["status"] == "finished"]]
    finite = finishers[np.isfinite(finishers)]
    if finite.size:  # the finishers fill most of the height; worse curves run off it
        low, high = finite.min(), finite.max()
        pad = 0.15 * (high - low) or 0.05 * abs(high) or 0.05
        worse_below = higher_is_better(result.monitor)  # more room on the worse side
        ax.set_ylim(low - pad * (3 if worse_below else 1), high + pad * (1 if worse_below else 3))
    ax.set_xlabel("epoch")
    ax.set_ylabel(result.monitor)
    counts = {s: sum(r["status"] == s for r in result.trials) for s in ("finished", "nan")}
    diverged = f", {counts['nan']} diverged (not drawn)" if counts["nan"] else ""
    ax.set_title(f"{len(result.trials)} trials ({counts['finished']} finished{diverged})")
    return fig


def write_search(folder: Path, result: SearchResult, settings: dict, rungs=()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _files.atomic_write(folder / "trials.csv", trials_csv(result).encode())
    _files.atomic_write(folder / "search.json", (json.dumps(settings, indent=2) + "\n").encode())
    fig = search_figure(result, rungs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    _files.atomic_write(folder / "search.png", buf.getvalue())
