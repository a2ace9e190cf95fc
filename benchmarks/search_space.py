"""What a richer space and the scikit-learn front door cost jaxnn.search, in one process.

On the digits task of search_peers.py (81 configurations, SuccessiveHalving(1, 27, 3),
SGD with momentum at batch 32, one 80/20 hold-out), each run twice per seed and the
second call timed (its programs compiled by the first); medians of the seeds:

- "width": learning rate, momentum and the width (16-128) of a network of three
  equal hidden layers;
- "depth + width + activation + batch size": the same and the depth (1-3 of those
  layers), the activation (relu, tanh, gelu) and the batch size (16, 32, 64: a bucket
  of slots each); target: at most 2x "width" (what the searching costs: the layers
  past a trial's depth still compute, as masked units do, and each batch size is its
  own epoch);
- "front door": jaxnn.sklearn.HalvingRandomSearchCV over MLPClassifier with the same
  distributions over one hidden layer (and its refit, as scikit-learn's), against
  jaxnn.search with refit=True on that space; target: at most 1.2x. (The refits
  differ: MLPClassifier's stops by its tol, the search's trains the winner's epochs.)

    python benchmarks/search_space.py                 # 3 seeds: about 3 minutes on 2 cores
    python benchmarks/search_space.py --seeds 1       # a quick look
"""

import argparse
import statistics
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from common import write_json
from scipy.stats import loguniform, uniform
from search_peers import WIDTHS, task

import jaxnn
from jaxnn.sklearn import HalvingRandomSearchCV, MLPClassifier

HERE = Path(__file__).resolve().parent
DEEP = "depth + width + activation + batch size"
TARGETS = {DEEP: 2.0, "front door": 1.2}  # at most x its baseline's time


def search(x, y, seed: int, layers: int, deep: bool = False, refit: bool = False):
    space = {
        "learning_rate": jaxnn.space.loguniform(1e-4, 1.0),
        "momentum": jaxnn.space.uniform(0.0, 0.99),
        "width": jaxnn.space.choice(WIDTHS),
    }
    if deep:
        space["depth"] = jaxnn.space.choice(list(range(1, layers + 1)))
        space["activation"] = jaxnn.space.choice(["relu", "tanh", "gelu"])
        space["batch_size"] = jaxnn.space.choice([16, 32, 64])
    sizes = [x.shape[1], *[max(WIDTHS)] * layers, int(y.max()) + 1]
    return jaxnn.search(jaxnn.mlp(sizes, init="glorot_uniform"), None, x, y, loss="softmax_cross_entropy",
                        key=jax.random.key(seed), space=space, schedule=jaxnn.SuccessiveHalving(1, 27, 3),
                        num_configs=81, validation=0.2, metrics=["accuracy"], monitor="val_accuracy",
                        batch_size=None if deep else 32, progress=False, refit=refit)  # fmt: skip


def front_door(x, y, seed: int):
    from sklearn.model_selection import ShuffleSplit

    dists = {"learning_rate_init": loguniform(1e-4, 1.0), "momentum": uniform(0.0, 0.99),
             "hidden_layer_sizes": [(w,) for w in WIDTHS]}  # fmt: skip
    estimator = MLPClassifier(solver="sgd", batch_size=32, max_iter=27, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the refit's ConvergenceWarning at max_iter
        return HalvingRandomSearchCV(estimator, dists, n_candidates=81, min_resources=1, factor=3,
                                     cv=ShuffleSplit(1, test_size=0.2, random_state=seed),
                                     random_state=seed).fit(x, y)  # fmt: skip


def timed(run, seed: int) -> float:
    """Seconds of a second call of ``run(seed)``."""
    run(seed)
    start = time.perf_counter()
    jax.block_until_ready(run(seed))
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    out = HERE / "results" / f"search_space_{jax.default_backend()}.json"
    ap.add_argument("--out", default=str(out))
    args = ap.parse_args(argv)
    x, x_test, y, y_test = task("digits")
    runs = {
        "width": lambda s: search(x, y, s, 3),
        DEEP: lambda s: search(x, y, s, 3, deep=True),
        "jaxnn.search, refit": lambda s: search(x, y, s, 1, refit=True),
        "front door": lambda s: front_door(x, y, s),
    }
    warm = {
        n: statistics.median(timed(run, s) for s in range(args.seeds)) for n, run in runs.items()
    }
    found = front_door(x, y, 0)
    baseline = {DEEP: "width", "front door": "jaxnn.search, refit"}
    ratios = {
        f"{name} / {baseline[name]} (target: at most {target})": warm[name] / warm[baseline[name]]
        for name, target in TARGETS.items()
    }
    results = {
        "environment": {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind,
            "seeds": args.seeds,
        },
        "warm seconds (median of the seeds)": warm,
        "warm time ratios": ratios,
        "front door": {"test accuracy, seed 0": float(np.mean(found.predict(x_test) == y_test))},
    }
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    print(warm)
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
