"""The seed's network: 1000 records x 3 features -> 4 -> 4 -> 1 (relu, relu, sigmoid),
RMSE, plain SGD, trained at batch size 1 (an update after every row) and at batch
size 100, against a least-squares line. Prints a table; writes a run folder per
setting plus a combined loss plot.

    python experiments/seed_network.py                  # both settings
    python experiments/seed_network.py --batch-size 1   # one setting, any flag
    python experiments/seed_network.py --search 9       # search batch size 1's learning rate
"""

import dataclasses
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jaxnn
from jaxnn import experiment

BATCH_1 = experiment.ExperimentConfig(
    name="seed_network",
    dataset="seed",
    task="regression",
    loss="rmse",
    output_activation="sigmoid",
    hidden=(4, 4),
    optimizer="sgd",
    learning_rate=0.02,
    batch_size=1,
    epochs=100,
)
BATCH_100 = dataclasses.replace(BATCH_1, batch_size=100, learning_rate=0.5, epochs=1000)


def main(argv=None):
    ap = experiment.parser(BATCH_1, __doc__)
    args = ap.parse_args(argv)
    if args.resume or args.from_run or args.search is not None or args.batch_size is not None:
        return [experiment.main(argv, BATCH_1, __doc__)]  # one run
    out = Path(args.out or f"runs/seed_network-{time.strftime('%Y%m%d-%H%M%S')}")
    results = []
    with experiment.exits(ap) as current:
        configs = [experiment.config_from_args(args, defaults) for defaults in (BATCH_1, BATCH_100)]
        for config in configs:
            current.append(out / f"batch-{config.batch_size}")
            results.append(
                experiment.run(
                    config, current[-1], overwrite=args.overwrite, progress=not args.no_progress
                )
            )
    split = experiment.load_split(results[0].config)
    line = jaxnn.linear_regression(split.x_train, split.y_train)
    linear_rmse = float(jaxnn.losses.rmse(line(split.x_test), split.y_test))
    print(f"\n{'model':30s} {'test RMSE':>10s} {'epochs':>7s} {'train time':>11s}")
    for r in results:
        s = r.summary
        name = f"MLP 3-4-4-1, batch size {r.config.batch_size}"
        print(f"{name:30s} {s['test_loss']:10.4f} {s['epochs_run']:7d} {s['wall_time_s']:10.2f}s")
    print(f"{'least-squares line':30s} {linear_rmse:10.4f}")
    _combined_plot(results, linear_rmse, out / "loss.png")
    print(f"run folder: {out}")
    return results


def _combined_plot(results, linear_rmse: float, path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        jaxnn.plot_history(r.fit.history, ax=ax)
        ax.axhline(linear_rmse, color="gray", linestyle="--", label="least-squares line (test)")
        ax.set_title(f"batch size {r.config.batch_size}")
        ax.set_ylabel("RMSE")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
