"""jaxnn.search on an accelerator: the GPU targets of the search, in one run.

The work: digits (inputs standardised, a held-out test quarter), a 64-100-10 relu MLP,
SGD with momentum at batch 32, the space of ``search_peers.py`` without the width
(learning rate log-uniform 1e-4..1, momentum uniform 0..0.99).

- full budget: 4,096 configurations, each trained all 27 epochs, all of them at once
  (one rung, 4,096 slots), timed warm (a second call in the process). Target: at least
  1,000 configurations a second.
- halving: SuccessiveHalving(1, 27, 3) over 4,096 configurations (default slots), end
  to end from a new process with the compilation cache off, compiling included.
  Target: at most 10 s.
- Optuna: TPE with its successive-halving pruner, each trial a ``jaxnn.fit`` that
  trains one epoch per call and reports every epoch, timed per trial from a new
  process. Target: the halving search's seconds per configuration at most 1/20 of
  Optuna's seconds per trial.
- transfers: the device-to-host transfers of the halving search's host loop (the
  arrays it fetches) against its chunks. Target: equal.

Writes results/search_<device>.json (the benchmarks page reads it).

    python benchmarks/search_gpu.py                # on the GPU machine: about 3 minutes
    python benchmarks/search_gpu.py --quick        # a dry run of every step, on any machine
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import write_json

HERE = Path(__file__).resolve().parent
EPOCHS = 27


def work(quick: bool) -> dict:
    return {
        "configs": 64 if quick else 4096,
        "optuna trials": 6 if quick else 40,
        "epochs": 3 if quick else EPOCHS,
    }


def search(x, y, seed: int, n: int, schedule, slots=None):
    import jax

    import jaxnn

    space = {
        "learning_rate": jaxnn.space.loguniform(1e-4, 1.0),
        "momentum": jaxnn.space.uniform(0.0, 0.99),
    }
    model = jaxnn.mlp([64, 100, 10])
    return jaxnn.search(model, None, x, y, loss="softmax_cross_entropy", key=jax.random.key(seed), space=space,
                        schedule=schedule, num_configs=n, slots=slots, validation=0.2, metrics=["accuracy"],
                        monitor="val_accuracy", batch_size=32, progress=False)  # fmt: skip


def accuracy(result, x_test, y_test) -> float:
    import jaxnn

    pred = np.asarray(jaxnn.predict(jaxnn.mlp([64, 100, 10]), result.best_params, x_test)).argmax(
        -1
    )
    return float((pred == y_test).mean())


def full_budget(quick: bool) -> dict:
    """Every configuration trained every epoch, all at once, timed warm."""
    from search_peers import task

    import jaxnn

    w = work(quick)
    x, x_test, y, y_test = task("digits")
    schedule = jaxnn.SuccessiveHalving(w["epochs"], w["epochs"], 3)
    search(x, y, 0, w["configs"], schedule, slots=w["configs"])  # compiles
    start = time.perf_counter()
    result = search(x, y, 1, w["configs"], schedule, slots=w["configs"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "configurations per second": w["configs"] / seconds,
            "test accuracy": accuracy(result, x_test, y_test)}  # fmt: skip


def halving(quick: bool) -> dict:
    """The successive-halving search from a cold process, its host reads counted
    (``SearchResult.host``)."""
    from search_peers import task

    import jaxnn

    w = work(quick)
    x, x_test, y, y_test = task("digits")
    start = time.perf_counter()
    result = search(x, y, 0, w["configs"], jaxnn.SuccessiveHalving(1, w["epochs"], 3))
    seconds = time.perf_counter() - start
    counts = {"chunks": result.host["chunks"], "transfers": result.host["reads"]}
    return {"seconds": seconds, "test accuracy": accuracy(result, x_test, y_test), **counts}


def optuna_trials(quick: bool) -> dict:
    """Optuna's TPE with its halving pruner, each trial a jaxnn.fit reporting every epoch."""
    import jax
    import optuna
    from search_peers import task

    import jaxnn

    w = work(quick)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, _, y, _ = task("digits")
    order = np.random.default_rng(0).permutation(len(x))
    val, train = order[: len(x) // 5], order[len(x) // 5 :]
    model = jaxnn.mlp([64, 100, 10])

    def objective(trial):
        lr = trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.99)
        result, key = None, jax.random.key(trial.number)
        for epoch in range(1, w["epochs"] + 1):
            result = jaxnn.fit(model, result.params if result else model.init(key), x[train], y[train],
                               loss="softmax_cross_entropy", key=key, epochs=epoch, resume=result,
                               optimizer=jaxnn.optim.momentum(lr, momentum), batch_size=32,
                               validation=(x[val], y[val]), metrics=["accuracy"], progress=False)  # fmt: skip
            trial.report(float(result.history["val_accuracy"][-1]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(result.history["val_accuracy"][-1])

    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=w["optuna trials"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "trials": w["optuna trials"]}


def in_new_process(function: str, quick: bool) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import search_gpu as g; "
        f"print(json.dumps(g.{function}({quick})))"
    )
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": "0", "JAXNN_PROGRAM_STORE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def targets(w: dict, full: dict, sh: dict, opt: dict) -> list[dict]:
    per_config, per_trial = sh["seconds"] / w["configs"], opt["seconds"] / opt["trials"]
    rows = [
        (
            "jaxnn full budget, warm",
            "1,000 configurations/s",
            full["seconds"] / (w["configs"] / 1000),
            1.0,
        ),
        ("jaxnn halving, cold", "10 s", sh["seconds"] / 10, 1.0),
        (
            "jaxnn halving, cold (per configuration)",
            "optuna (per trial)",
            per_config / per_trial,
            1 / 20,
        ),
        (
            "jaxnn halving: transfers / chunks",
            "one per chunk",
            sh["transfers"] / max(sh["chunks"], 1),
            1.0,
        ),
    ]
    return [{"run": run, "peer": peer, "time ratio": round(r, 4), "at most": round(limit, 4),
             "accuracy difference": 0.0, "met": r <= limit, "why": ""} for run, peer, r, limit in rows]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a dry run of every step")
    ap.add_argument("--out", default=None, help="default: results/search_<device>.json")
    args = ap.parse_args(argv)
    import jax

    device = jax.devices()[0].device_kind
    w = work(args.quick)
    full, sh, opt = (
        in_new_process(f, args.quick) for f in ("full_budget", "halving", "optuna_trials")
    )
    print(json.dumps({"full budget": full, "halving": sh, "optuna": opt}, indent=1), flush=True)
    runs = {
        f"jaxnn full budget ({w['configs']} configurations, {w['epochs']} epochs), warm": full,
        f"jaxnn halving ({w['configs']} configurations), cold": sh,
        f"optuna ({opt['trials']} trials), cold": {**opt, "test accuracy": float("nan")},
    }
    results = {
        "environment": {
            "jax": jax.__version__,
            "device": device,
            "backend": jax.default_backend(),
            "sklearn": __import__("sklearn").__version__,
        },
        "digits, 64-100-10": {**runs, "targets": targets(w, full, sh, opt), "seeds": 1},
    }
    name = "".join(c if c.isalnum() else "_" for c in device.lower()).strip("_")
    write_json(
        args.out or HERE / "results" / f"search_{'quick_' if args.quick else ''}{name}.json",
        results,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
