"""Latency of short runs on this machine: how much of a first call is compiling, and
what JAX's persistent compilation cache and jaxnn's program store (both on by
default, see ``jaxnn.cache``) save.

Each measurement runs in fresh processes (a fresh process is what a user starts)
with private cache and store folders, and prints ratios:

- the anatomy of a second: three jobs (the README's main job, the seed fit, the
  digits search), each in three states (cold: nothing cached; JAX's cache only; a
  store hit: the store and JAX's cache a first process wrote), the seconds spent in
  each stage (import, eager helpers, tracing, lowering, XLA compile, store load, run;
  median of three processes);
- the programs a fresh process compiles for the README's functional example, and
  ``make_regression`` + ``mlp(...).init`` in a fresh process and on a store hit;

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

    python benchmarks/latency.py [--out latency.json] [--only-anatomy]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import STAGES, anatomy_markdown, write_json

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


# Times each stage of a job: JAX reports tracing, lowering and XLA compiling (a load
# from its persistent cache counts as compiling); jaxnn's store loads are timed by
# wrapping its loader. "helpers" and "run" are the wall time of those phases less the
# stages inside them.
ANATOMY = """
import time, json, contextlib
T0 = time.perf_counter()
import jax, jax.monitoring, numpy as np
import jaxnn
from jaxnn import _programs
stages = dict(import_=time.perf_counter() - T0, helpers=0.0, tracing=0.0, lowering=0.0, compile=0.0, load=0.0,
              run=0.0)
EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "tracing",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
          "/jax/core/compile/backend_compile_duration": "compile"}
compiles = [0]
def on_event(event, duration, **kw):
    if event in EVENTS:
        stages[EVENTS[event]] += duration
        compiles[0] += event.endswith("backend_compile_duration")
jax.monitoring.register_event_duration_secs_listener(on_event)
real_load = _programs._load
def timed_load(payload):
    t = time.perf_counter(); out = real_load(payload); stages["load"] += time.perf_counter() - t; return out
_programs._load = timed_load
@contextlib.contextmanager
def phase(name):
    before = sum(stages[k] for k in ("tracing", "lowering", "compile", "load"))
    t = time.perf_counter()
    yield
    inside = sum(stages[k] for k in ("tracing", "lowering", "compile", "load")) - before
    stages[name] += time.perf_counter() - t - inside
"""
ANATOMY_END = """
print(json.dumps({**stages, "compiles": compiles[0]}))
"""
JOBS = {
    "README main job (experiments/seed_network.py)": """
import runpy, sys, tempfile
with phase("run"), tempfile.TemporaryDirectory() as out:
    sys.argv = ["seed_network.py", "--out", out, "--no-progress"]
    runpy.run_path("{root}/experiments/seed_network.py", run_name="__main__")
""",
    "seed fit (1000 rows, batch 1, 100 epochs)": """
with phase("helpers"):
    x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
    m = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    p = m.init(jax.random.key(1))
with phase("run"):
    r = jaxnn.fit(m, p, x, y, loss="rmse", optimizer=jaxnn.optim.sgd(0.02), batch_size=1, epochs=100,
                  key=jax.random.key(2), progress=False)
    jax.block_until_ready(r.params)
""",
    "digits search (benchmarks/search_peers.py's, seed 0)": """
with phase("helpers"):
    import sys
    sys.path.insert(0, "{root}/benchmarks")
    from search_peers import jaxnn_search, task
    x, x_test, y, y_test = task("digits")
with phase("run"):
    jax.block_until_ready(jaxnn_search(x, y, 0).best_params)
""",
}
STATES = ("cold", "JAX's cache only", "store hit")


def anatomy(repeats: int = 3) -> dict:
    """``{job: {state: {stage: median seconds}}}`` and the programs each compiled."""
    table = {}
    for job, code in JOBS.items():
        samples = {state: [] for state in STATES}
        for _ in range(repeats):
            source = ANATOMY + code.format(root=ROOT) + ANATOMY_END
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as store:
                # cold and JAX's cache only with the store off (a store miss compiles
                # anew, without JAX's cache), then the store written and read
                runs = ((cache, None), (cache, None), (cache, store), (cache, store))
                out = [json.loads(python(source, c, st, raw=True)) for c, st in runs]
            for state, sample in zip(STATES, (out[0], out[1], out[3]), strict=True):
                samples[state].append(sample)
        table[job] = {
            state: {k: statistics.median(r[k] for r in rows) for k in (*STAGES, "compiles")}
            for state, rows in samples.items()
        }
    return table


FUNCTIONAL = """
import time, jax, jax.monitoring
compiles = [0]
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **k: compiles.__setitem__(0, compiles[0] + (e == "/jax/core/compile/backend_compile_duration")))
import jaxnn
t = time.perf_counter()
x, y = jaxnn.make_regression(jax.random.key(0), n=1000, features=3)
params = jaxnn.mlp([3, 4, 4, 1], activation="relu", output_activation="sigmoid").init(jax.random.key(2))
helpers = time.perf_counter() - t
x_train, x_test, y_train, y_test = jaxnn.train_test_split(jax.random.key(1), x, y, 0.2)
model = jaxnn.mlp([3, 4, 4, 1], activation="relu", output_activation="sigmoid")
str(jaxnn.explain(model, params, x_train[:100]))
result = jaxnn.fit(model, params, x_train, y_train, loss="rmse", optimizer=jaxnn.optim.sgd(0.02),
                   batch_size=1, epochs=100, key=jax.random.key(3),
                   validation=(x_test, y_test), metrics=["r2"], progress=False)
str(result)
y_hat = jaxnn.predict(model, result.params, x_test)
grads = jax.block_until_ready(jaxnn.backprop(model, params, x_train[:100], y_train[:100], "rmse"))
print(compiles[0], helpers)
"""


def python(code: str, cache: str | None, store: str | None = None, raw: bool = False):
    """Runs ``code`` in a new process, JAX's compilation cache in folder ``cache`` and
    jaxnn's program store in ``store`` (each off when ``None``); its printed numbers,
    or (``raw``) its last line."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    env["JAXNN_COMPILATION_CACHE"] = cache or "0"
    env["JAXNN_PROGRAM_STORE"] = store or "0"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1] if raw else [float(v) for v in out.stdout.split()]


def script_time(cache: str, store: str | None = None) -> float:
    env = {
        **os.environ,
        "JAXNN_COMPILATION_CACHE": cache,
        "JAXNN_PROGRAM_STORE": store or "0",
        "MPLBACKEND": "Agg",
    }
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
    ap.add_argument("--only-anatomy", action="store_true", help="the anatomy table only")
    args = ap.parse_args(argv)
    import jax

    results = {"jax": jax.__version__, "device": jax.devices()[0].device_kind}
    table = anatomy()
    results["anatomy (s): job -> state -> stage"] = table
    print(anatomy_markdown(table))
    if args.only_anatomy:
        if args.out:
            write_json(args.out, results)
        return results
    counts = [python(FUNCTIONAL, None) for _ in range(3)]
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as store:
        python(FUNCTIONAL, cache, store)  # writes both
        hits = [python(FUNCTIONAL, cache, store) for _ in range(3)]
    results["README functional example: programs compiled, fresh process"] = counts[0][0]
    results["README functional example: programs compiled, store hit"] = hits[0][0]
    results["make_regression + mlp(...).init (s): fresh process, store hit"] = [
        statistics.median(c[1] for c in counts),
        statistics.median(h[1] for h in hits),
    ]
    # A first call is one sample of a noisy machine: the median over three fresh processes.
    ratio = lambda cache, store=None: statistics.median(
        first / warm for first, warm in (python(SEED_FIT, cache, store) for _ in range(3))
    )
    results["seed fit: first call / warm call, no cache"] = ratio(None)
    with tempfile.TemporaryDirectory() as cache:
        python(SEED_FIT, cache)  # fills the cache
        results["seed fit: first call / warm call, second process with the cache"] = ratio(cache)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as store:
        python(SEED_FIT, cache, store)  # fills both
        results["seed fit: first call / warm call, second process with the cache and the store"] = (
            ratio(cache, store)
        )
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as store:
        run1, run2 = script_time(cache, store), script_time(cache, store)
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
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as store:
        python(IRIS + CV, cache, store)  # fills both
        jx, _, sk, _ = python(IRIS + CV, cache, store)
        results[
            "iris CV 5x5: jaxnn.sklearn / scikit-learn time, second process (cache and store)"
        ] = jx / sk
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
        if not k.startswith("anatomy"):
            print(f"{k:80s} {v if isinstance(v, str | dict | list) else f'{v:.3g}'}")
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
