"""Latency of short runs on this machine: how much of a first call is compiling, and
what JAX's persistent compilation cache (on by default, see ``jaxnn.cache``) saves.

Each measurement runs in fresh processes (a fresh process is what a user starts)
with a private cache folder, and prints ratios:

- the seed network's 100-epoch batch-1 fit: first call in a fresh process against a
  warm call, without the cache and in a later process with it (median of three
  processes each);
- the README's main job (``experiments/seed_network.py``): second run against first;
- cross-validating ``jaxnn.sklearn.MLPClassifier`` on iris (5 folds x 5 seeds, default
  parameters) against scikit-learn's MLPClassifier, in one process, without the cache
  and in a second process with it;
- ``fit``'s fixed cost per call (work A, batch 100, 3 epochs, repeat calls), and a
  fit of one step against one call of a jitted ``make_train_step``;
- one ``predict`` and one ``partial_fit`` call of ``jaxnn.sklearn.MLPClassifier`` on
  iris against scikit-learn's;
- a first ``solver="lbfgs"`` fit on iris in a fresh process (mostly compiling), a
  repeat, and scikit-learn's.

    python benchmarks/latency.py [--out latency.json]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_json

ROOT = Path(__file__).resolve().parents[1]

SEED_FIT = """
import time, jax, jaxnn
x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
m = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
p = m.init(jax.random.key(1))
kw = dict(loss="rmse", optimizer=jaxnn.optim.sgd(0.02), batch_size=1, epochs=100, key=jax.random.key(2), progress=False)
def once():
    t = time.perf_counter(); jax.block_until_ready(jaxnn.fit(m, p, x, y, **kw).params); return time.perf_counter() - t
first = once()
print(first, min(once() for _ in range(5)))
"""

# Iris, jaxnn.sklearn's MLPClassifier and scikit-learn's (SkMLP): goes before the
# snippets that compare them.
IRIS = """
import time, warnings, numpy as np
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.exceptions import ConvergenceWarning
warnings.simplefilter("ignore", ConvergenceWarning)
from jaxnn.sklearn import MLPClassifier
x, y = load_iris(return_X_y=True)
"""

CV = """
from sklearn.model_selection import cross_val_score, StratifiedKFold
def cv(cls):
    t = time.perf_counter(); scores = []
    for seed in range(5):
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        scores += list(cross_val_score(cls(random_state=seed), x, y, cv=folds))
    return time.perf_counter() - t, float(np.mean(scores))
print(*cv(MLPClassifier), *cv(SkMLP))
"""

PER_CALL = """
import time, jax, jaxnn
x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
m = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
p = m.init(jax.random.key(1))
kw = dict(loss="mse", optimizer=jaxnn.optim.sgd(0.1), batch_size=100, epochs=3, shuffle=False, key=jax.random.key(2),
          progress=False)
def once():
    t = time.perf_counter(); jax.block_until_ready(jaxnn.fit(m, p, x, y, **kw).params); return time.perf_counter() - t
once()
one = min(once() for _ in range(200))
kw["epochs"] = 300
long = min(once() for _ in range(20))
print(one, long)
"""


# The best of many calls, after a first one: goes before FIXED and SKLEARN_CALLS.
BEST = """
import time
def best(f, calls):
    f()
    times = []
    for _ in range(calls):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)
"""

FIXED = """
import jax, jax.numpy as jnp, numpy as np, optax, jaxnn
x, y = jaxnn.make_regression(jax.random.key(0), n=100)
m = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
p = m.init(jax.random.key(1))
kw = dict(loss="mse", optimizer=jaxnn.optim.sgd(0.1), batch_size=100, epochs=1, shuffle=False, key=jax.random.key(2),
          progress=False)
tx = optax.sgd(0.1)
step = jax.jit(jaxnn.make_train_step(m.apply, "mse", tx))
state = jaxnn.train.init_state(p, tx, jax.random.key(2))
fit = lambda: jax.block_until_ready(jaxnn.fit(m, p, x, y, **kw).params)
hand = lambda: np.asarray(jax.block_until_ready(step(state, (x, y)))[1]["loss"])
print(best(fit, 500), best(hand, 500))
"""

SKLEARN_CALLS = """
out = []
for cls in (MLPClassifier, SkMLP):
    clf = cls(random_state=0, max_iter=5).fit(x, y)
    out += [best(lambda: clf.predict(x), 200), best(lambda: clf.partial_fit(x, y), 200)]
print(*out)
"""

LBFGS = """
def once(cls):
    t = time.perf_counter(); cls(solver="lbfgs", random_state=0).fit(x, y); return time.perf_counter() - t
print(once(MLPClassifier), once(MLPClassifier), once(SkMLP))
"""


def python(code: str, cache: str | None) -> list[float]:
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env["JAXNN_COMPILATION_CACHE"] = cache or "0"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return [float(v) for v in out.stdout.split()]


def script_time(cache: str) -> float:
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": cache, "MPLBACKEND": "Agg"}
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "seed_network.py"), "--out", out, "--no-progress"],
            env=env, capture_output=True, check=True,
        )  # fmt: skip
        return time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    import jax

    results = {"jax": jax.__version__, "device": jax.devices()[0].device_kind}
    # A first call is one sample of a noisy machine: the median over three fresh processes.
    ratio = lambda cache: statistics.median(
        first / warm for first, warm in (python(SEED_FIT, cache) for _ in range(3))
    )
    results["seed fit: first call / warm call, no cache"] = ratio(None)
    with tempfile.TemporaryDirectory() as cache:
        python(SEED_FIT, cache)  # fills the cache
        results["seed fit: first call / warm call, second process with the cache"] = ratio(cache)
    with tempfile.TemporaryDirectory() as cache:
        run1, run2 = script_time(cache), script_time(cache)
        results["main job: first run (s)"], results["main job: second run (s)"] = run1, run2
        results["main job: second run / first run"] = run2 / run1
    jx, jx_score, sk, sk_score = python(IRIS + CV, None)
    results["iris CV 5x5: jaxnn.sklearn / scikit-learn time"] = jx / sk
    results["iris CV 5x5 (s, mean accuracy)"] = {
        "jaxnn.sklearn": [jx, jx_score],
        "scikit-learn": [sk, sk_score],
    }
    with tempfile.TemporaryDirectory() as cache:
        python(IRIS + CV, cache)  # fills the cache
        jx, _, sk, _ = python(IRIS + CV, cache)
        results["iris CV 5x5: jaxnn.sklearn / scikit-learn time, second process with the cache"] = (
            jx / sk
        )
    one, long = python(PER_CALL, None)
    results["fit per-call cost (us): 3-epoch call minus 1/100 of a 300-epoch call"] = 1e6 * (
        one - long / 100
    )
    results["work A batch 100, 3 epochs (samples/s)"] = 3000 / one
    fit_once, hand = python(BEST + FIXED, None)
    results["fit of one step (us, best of 500 calls)"] = 1e6 * fit_once
    results["jitted make_train_step, one call and its loss fetched (us, best of 500)"] = 1e6 * hand
    jx_predict, jx_partial, sk_predict, sk_partial = python(BEST + IRIS + SKLEARN_CALLS, None)
    results["iris, one predict call: jaxnn.sklearn / scikit-learn time"] = jx_predict / sk_predict
    results["iris, one partial_fit call: jaxnn.sklearn / scikit-learn time"] = (
        jx_partial / sk_partial
    )
    results["iris, one call (us): predict, partial_fit"] = {
        "jaxnn.sklearn": [1e6 * jx_predict, 1e6 * jx_partial],
        "scikit-learn": [1e6 * sk_predict, 1e6 * sk_partial],
    }
    first, repeat, sk = python(IRIS + LBFGS, None)
    results["iris, solver='lbfgs' (s): first fit in a process, a repeat, scikit-learn"] = [
        first,
        repeat,
        sk,
    ]
    for k, v in results.items():
        print(f"{k:80s} {v if isinstance(v, str | dict | list) else f'{v:.3g}'}")
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
