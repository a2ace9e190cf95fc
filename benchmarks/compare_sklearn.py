"""jaxnn against scikit-learn's MLPClassifier / MLPRegressor on every experiment's
task, at the same settings: hidden sizes, relu, plain SGD (momentum 0), batch size,
learning rate, epochs, no L2 penalty, no early stopping, the same split. Three
contenders: ``jaxnn.fit`` with the experiment's config, ``jaxnn.sklearn``'s estimator
and scikit-learn's own, the two estimators built with the very same parameters.
Prints one table (test metric and training time) and writes it as markdown with
--markdown.

The last column is a whole 5-fold ``cross_val_score`` of each estimator on the
training split, timed from cold: it is the first thing each task runs, with jaxnn's
persistent compilation cache switched off, so jaxnn's time includes compiling every
program the folds need (a user's second run would find them in the cache).

    python benchmarks/compare_sklearn.py --markdown sklearn_table.md
"""

import argparse
import dataclasses
import importlib.util
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from common import write_text

import jaxnn
from jaxnn import experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"  # the scripts it compares
SCRIPTS = [
    "seed_network",
    "classify_breast_cancer",
    "classify_iris",
    "classify_digits",
    "regress_diabetes",
]


def load_config(script: str) -> experiment.ExperimentConfig:
    spec = importlib.util.spec_from_file_location(script, EXPERIMENTS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "CONFIG", None) or module.BATCH_1


def estimator_run(config: experiment.ExperimentConfig, split, library: str) -> tuple[float, float]:
    """Trains ``library``'s estimator (``"sklearn"`` or ``"jaxnn"``) with the same parameters."""
    from sklearn.exceptions import ConvergenceWarning

    make = lambda: _estimator(config, library)
    y = split.y_train.ravel() if split.y_train.ndim == 2 else split.y_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if library == "jaxnn":
            make().fit(split.x_train, y)  # compile once, as sklearn has nothing to compile
        start = time.perf_counter()
        est = make().fit(split.x_train, y)
        wall = time.perf_counter() - start
    pred = est.predict(split.x_test)
    return _score(config, pred, split.y_test), wall


def _estimator(config: experiment.ExperimentConfig, library: str):
    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    else:
        from jaxnn.sklearn import MLPClassifier, MLPRegressor
    cls = MLPRegressor if config.task == "regression" else MLPClassifier
    return cls(
        hidden_layer_sizes=config.hidden,
        activation=config.activation,
        solver="sgd",
        alpha=0.0,
        batch_size=config.batch_size,
        learning_rate_init=config.learning_rate,
        momentum=0.0,
        max_iter=config.epochs,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=10**9,
        random_state=config.seed,
    )


def cv_wall(config, split, library: str) -> float:
    """Seconds for a 5-fold ``cross_val_score`` of ``library``'s estimator (compile included)."""
    from sklearn.model_selection import cross_val_score

    est, y = (
        _estimator(config, library),
        split.y_train.ravel() if split.y_train.ndim == 2 else split.y_train,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cross_val_score(est, split.x_train, y, cv=5)
    return time.perf_counter() - start


def _score(config, pred, y_test) -> float:
    if config.task == "regression":
        return float(np.sqrt(np.mean((np.asarray(pred).ravel() - y_test.ravel()) ** 2)))
    return float(np.mean(np.asarray(pred).ravel() == y_test.ravel()))


def jaxnn_run(config, split) -> tuple[float, float]:
    n_out = len(split.classes) if config.task == "multiclass" else 1
    model = jaxnn.mlp(
        [split.x_train.shape[1], *config.hidden, n_out], config.activation, config.output_activation
    )
    params = model.init(jax.random.fold_in(jax.random.key(config.seed), 2))
    kw = dict(
        loss=config.loss,
        optimizer=jaxnn.optim.sgd(config.learning_rate),
        batch_size=config.batch_size,
        epochs=config.epochs,
        key=jax.random.key(config.seed),
        progress=False,
    )
    jaxnn.fit(
        model, params, split.x_train, split.y_train, **kw
    )  # compile once, as sklearn has nothing to compile
    start = time.perf_counter()
    result = jaxnn.fit(model, params, split.x_train, split.y_train, **kw)
    jax.block_until_ready(result.params)
    wall = time.perf_counter() - start
    pred = np.asarray(jaxnn.predict(model, result.params, split.x_test))
    if config.task != "regression":
        pred = np.asarray(jaxnn.metrics.predicted_classes(pred))
    return _score(config, pred, split.y_test), wall


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--epochs-scale", type=float, default=1.0, help="scale every config's epochs (smoke runs)"
    )
    ap.add_argument("--markdown", help="also write the table as markdown to this file")
    args = ap.parse_args(argv)
    rows = []
    for script in SCRIPTS:
        config = load_config(script)
        config = dataclasses.replace(
            config, epochs=max(1, round(config.epochs * args.epochs_scale))
        )
        split = experiment.load_split(config)
        metric = "test RMSE (lower is better)" if config.task == "regression" else "test accuracy"
        cv = (
            cv_wall(config, split, "jaxnn"),
            cv_wall(config, split, "sklearn"),
        )  # first: nothing compiled yet
        runs = [
            jaxnn_run(config, split),
            estimator_run(config, split, "jaxnn"),
            estimator_run(config, split, "sklearn"),
        ]
        rows.append((script, metric, config.batch_size, config.epochs, runs, cv))
    head = (
        "| task | metric | batch | epochs | jaxnn.fit | jaxnn.sklearn | sklearn | jaxnn.fit time "
        "| jaxnn.sklearn time | sklearn time | speed-up: fit, estimator | 5-fold CV from cold: jaxnn.sklearn, sklearn |"
    )
    lines = [head, "|" + "---|" * 12]
    for script, metric, bs, ep, ((fs, ft), (es, et), (ss, st)), (cj, cs) in rows:
        lines.append(
            f"| {script} | {metric} | {bs} | {ep} | {fs:.4f} | {es:.4f} | {ss:.4f} | {ft:.3f} s | {et:.3f} s "
            f"| {st:.3f} s | {st / ft:.0f}x, {st / et:.0f}x | {cj:.2f} s, {cs:.2f} s |"
        )
    table = "\n".join(lines)
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(table)
    if args.markdown:
        write_text(args.markdown, table + "\n")
    return rows


if __name__ == "__main__":
    jaxnn.cache.disable()  # before anything compiles: the cross-validation column is timed from cold
    main(sys.argv[1:])
