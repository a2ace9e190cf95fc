"""Bad inputs at every public entry point, drawn by hypothesis.

Each (entry point, kind of bad input) pair below must end in a ValueError or
TypeError whose message names what was wrong and what was expected (the ``match``
pattern), before anything is trained or written: never a silent wrong result, a crash
of the interpreter, or a damaged file. The README quotes the table's size; a test
below keeps that number true.
"""

import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import jaxnn
from jaxnn import checkpoint, experiment, losses, metrics
from jaxnn.sweep import fit_many

KINDS = {
    "rank": "wrong rank",
    "length": "wrong length or shape",
    "nonfinite": "NaN or inf",
    "empty": "empty array",
    "dtype": "object or string dtype",
    "overflow": "integers beyond int32 or float32",
    "labels": "labels out of range or not whole numbers",
    "batch_size": "batch size 0 or beyond n",
    "learning_rate": "negative, zero, NaN or inf learning rate",
    "name": "unknown name",
    "bytes": "random, truncated or flipped checkpoint bytes",
}
CASES = {}


def case(entry: str, kind: str):
    """Registers ``fn(data, tmp)``: hypothesis's ``data`` to draw from, and a folder."""
    assert kind in KINDS
    return lambda fn: CASES.setdefault((entry, kind), fn)


K = jax.random.key(0)
MODEL = jaxnn.mlp([3, 4, 2])
PARAMS = MODEL.init(K)
X = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
Y = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
LABELS = np.arange(10) % 2


CHECKPOINTS = Path(tempfile.mkdtemp()) / "checkpoints"  # fit is told to save here; a failed fit must not


def expect(error, match, fn, *args, **kwargs):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)
    assert not CHECKPOINTS.exists(), "a call that failed wrote a checkpoint"


def fit(x=X, y=Y, **kw):
    kw = {"loss": "mse", "key": K, "progress": False, "batch_size": 2, "checkpoint_dir": CHECKPOINTS, **kw}
    return jaxnn.fit(MODEL, PARAMS, x, y, **kw)


def many(x=X, y=Y, **kw):
    return fit_many(MODEL, x, y, **{"loss": "mse", "key": K, "progress": False, "batch_size": 2, **kw})


# strategies ---------------------------------------------------------------------------

bad_ranks = st.sampled_from([(), (10,), (10, 3, 1), (2, 5, 3)])
nonfinite = st.sampled_from([np.nan, np.inf, -np.inf])
bad_dtypes = st.sampled_from(["str", "object", "complex"])
huge_ints = st.integers(2**31, 2**62)
bad_lrs = st.one_of(st.floats(max_value=0.0), st.sampled_from([np.nan, np.inf]))


def poisoned(data, a, value):
    """``a`` with ``value`` at a drawn position."""
    a = np.array(a, np.float32)
    a[tuple(data.draw(st.integers(0, s - 1)) for s in a.shape)] = value
    return a


def of_dtype(kind: str, shape=(10, 3)):
    if kind == "str":
        return np.full(shape, "one")
    if kind == "complex":
        return np.ones(shape, np.complex64)
    return np.full(shape, None, dtype=object)


def bad_labels(data, k: int, n: int = 10):
    """Integer labels with one outside [0, k), or float labels that are not whole."""
    labels = LABELS[:n] % k
    if data.draw(st.booleans()):
        labels = labels.copy()
        labels[data.draw(st.integers(0, n - 1))] = data.draw(
            st.one_of(st.integers(k, 10**6), st.integers(-(10**6), -1))
        )
        return labels
    return labels + data.draw(st.floats(0.1, 0.9))


# jaxnn.mlp ----------------------------------------------------------------------------


@case("mlp", "rank")
def _(data, tmp):
    expect(TypeError, "sizes must be a sequence of ints", jaxnn.mlp, data.draw(st.sampled_from([3, "3,4,1", None])))


@case("mlp", "length")
def _(data, tmp):
    expect(ValueError, "at least an input and an output size", jaxnn.mlp, data.draw(st.sampled_from([[3], [], (4,)])))


@case("mlp", "dtype")
def _(data, tmp):
    bad = data.draw(st.sampled_from([4.5, "4", None, np.float32(2.0)]))
    expect(TypeError, r"sizes\[1\] must be an int", jaxnn.mlp, [3, bad, 1])


@case("mlp", "overflow")
def _(data, tmp):
    expect(ValueError, "weights; at most 2147483647 per layer", jaxnn.mlp, [3, data.draw(huge_ints), 1])


@case("mlp", "name")
def _(data, tmp):
    name = data.draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in jaxnn.activations.ACTIVATIONS))
    expect(ValueError, "unknown activation .*; expected one of", jaxnn.mlp, [3, 1], activation=name)


# Model.apply --------------------------------------------------------------------------


@case("apply", "rank")
def _(data, tmp):
    shape = data.draw(st.sampled_from([(), (2, 2, 3), (1, 1, 1, 3)]))
    expect(ValueError, r"x must have shape \(batch, 3\) or \(3,\)", MODEL.apply, PARAMS, np.ones(shape))


@case("apply", "length")
def _(data, tmp):
    features = data.draw(st.integers(1, 9).filter(lambda f: f != 3))
    expect(ValueError, "features but the first layer expects 3", MODEL.apply, PARAMS, np.ones((2, features)))


@case("apply", "dtype")
def _(data, tmp):
    expect(TypeError, "x must be a numeric", MODEL.apply, PARAMS, of_dtype(data.draw(bad_dtypes), (2, 3)))


# losses -------------------------------------------------------------------------------

loss_names = st.sampled_from(sorted(losses.LOSSES))


@case("losses", "rank")
def _(data, tmp):
    name = data.draw(loss_names.filter(lambda n: n != "softmax_cross_entropy"))
    expect(
        ValueError, r"must have the same shape \(reshape targets", losses.get_loss(name), np.ones((5, 1)), np.ones(5)
    )


@case("losses", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 9).filter(lambda n: n != 5))
    expect(
        ValueError,
        "must have the same shape|labels must have shape",
        losses.get_loss(data.draw(loss_names)),
        np.full((5, 2), 0.5),
        np.full((n, 2), 0.5),
    )


@case("losses", "empty")
def _(data, tmp):
    expect(
        ValueError,
        r"the batch is empty \(0 examples\); expected at least one",
        losses.get_loss(data.draw(loss_names)),
        np.ones((0, 2)),
        np.ones((0, 2)),
    )


@case("losses", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "targets must be a numeric",
        losses.get_loss(data.draw(loss_names)),
        np.full((3, 2), 0.5),
        of_dtype(data.draw(bad_dtypes), (3, 2)),
    )


@case("losses", "labels")
def _(data, tmp):
    if data.draw(st.booleans()):
        labels = bad_labels(data, 2)
        expect(
            ValueError,
            r"labels must lie in \[0, 2\)|must have the same shape",
            losses.softmax_cross_entropy,
            np.zeros((10, 2)),
            labels,
        )
    else:
        targets = poisoned(data, np.zeros((10, 1)), data.draw(st.one_of(st.floats(1.01, 1e6), st.floats(-1e6, -0.01))))
        name = data.draw(st.sampled_from(["binary_cross_entropy", "binary_cross_entropy_with_logits"]))
        expect(ValueError, r"targets must lie in \[0, 1\]", losses.get_loss(name), np.full((10, 1), 0.5), targets)


@case("losses", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in losses.LOSSES))
    expect(ValueError, "unknown loss .*; expected one of", losses.get_loss, name)


# metrics ------------------------------------------------------------------------------

metric_names = st.sampled_from(sorted(metrics.METRICS))


@case("metrics", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 9).filter(lambda n: n != 5))
    expect(
        ValueError,
        "do not match predictions|must have the same shape",
        metrics.get_metric(data.draw(metric_names))[1],
        np.ones((5, 1)),
        np.ones((n, 1)),
    )


@case("metrics", "empty")
def _(data, tmp):
    expect(
        ValueError,
        "the batch is empty",
        metrics.get_metric(data.draw(metric_names))[1],
        np.ones((0, 1)),
        np.ones((0, 1)),
    )


@case("metrics", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "must be a numeric",
        metrics.get_metric(data.draw(metric_names))[1],
        of_dtype(data.draw(bad_dtypes), (3, 1)),
        np.ones((3, 1)),
    )


@case("metrics", "labels")
def _(data, tmp):
    expect(
        ValueError,
        r"targets must be class labels, whole numbers in \[0, 3\)",
        metrics.accuracy,
        np.ones((10, 3)),
        bad_labels(data, 3),
    )


@case("metrics", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in metrics.METRICS))
    expect(ValueError, "unknown metric .*; expected one of", metrics.get_metric, name)


# data utilities -----------------------------------------------------------------------


@case("data", "rank")
def _(data, tmp):
    shape = data.draw(bad_ranks)
    expect(ValueError, r"x must be 2-D \(samples, features\)", jaxnn.validate, np.ones(shape))


@case("data", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    fn = data.draw(st.sampled_from([jaxnn.validate, lambda x, y: jaxnn.train_test_split(K, x, y)]))
    expect(ValueError, r"y must have shape \(10,\) or \(10, outputs\)", fn, X, np.ones(n))


@case("data", "nonfinite")
def _(data, tmp):
    fn = data.draw(st.sampled_from([jaxnn.validate, jaxnn.standardize, jaxnn.Standardizer.fit]))
    expect(
        ValueError,
        r"has a non-finite value \(.*\) at row \d+, column \d+; expected finite",
        fn,
        poisoned(data, X, data.draw(nonfinite)),
    )


@case("data", "empty")
def _(data, tmp):
    shape = data.draw(st.sampled_from([(0, 3), (3, 0), (0, 0)]))
    expect(ValueError, "must have at least one row and one column", jaxnn.validate, np.ones(shape))


@case("data", "dtype")
def _(data, tmp):
    expect(TypeError, r"must be a numeric array \(int or float\)", jaxnn.validate, of_dtype(data.draw(bad_dtypes)))


@case("data", "overflow")
def _(data, tmp):
    which = data.draw(st.sampled_from(["labels", "float32", "one_hot", "make_regression"]))
    if which == "labels":
        expect(
            ValueError, "integer labels outside the int32 range", jaxnn.validate, X, np.full(10, data.draw(huge_ints))
        )
    elif which == "float32":
        expect(
            ValueError, r"non-finite value \(-?inf\)", jaxnn.validate, poisoned(data, X, 0).astype(np.float64) * 1e300
        )
    elif which == "one_hot":
        expect(ValueError, "elements in one array", jaxnn.one_hot, LABELS, data.draw(huge_ints))
    else:
        expect(ValueError, "elements in one array", jaxnn.make_regression, K, n=data.draw(huge_ints))


@case("data", "labels")
def _(data, tmp):
    labels = bad_labels(data, 2)
    expect(ValueError, r"labels must (lie in \[0, 2\)|be a 1-D integer array)", jaxnn.one_hot, labels, 2)


@case("data", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in jaxnn.data.DATASETS))
    expect(ValueError, "unknown dataset .*; expected one of", jaxnn.load_dataset, name)


# fit ----------------------------------------------------------------------------------


@case("fit", "rank")
def _(data, tmp):
    expect(ValueError, r"x must be 2-D \(samples, features\)", fit, x=np.ones(data.draw(bad_ranks)))


@case("fit", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    outputs = data.draw(st.integers(3, 5))
    y = data.draw(st.sampled_from([np.ones((n, 2)), np.ones((10, outputs))]))
    expect(ValueError, r"y must have shape \(10,\)|y has shape .* expected targets of shape \(n, 2\)", fit, y=y)


@case("fit", "nonfinite")
def _(data, tmp):
    where = data.draw(st.sampled_from(["x", "y", "params"]))
    value = data.draw(nonfinite)
    if where == "params":
        bad = [dict(layer) for layer in PARAMS]
        bad[1]["w"] = poisoned(data, bad[1]["w"], value)
        expect(
            ValueError,
            r"params\[1\]\['w'\] has non-finite values",
            jaxnn.fit,
            MODEL,
            bad,
            X,
            Y,
            loss="mse",
            key=K,
            batch_size=2,
            progress=False,
            checkpoint_dir=CHECKPOINTS,
        )
    else:
        expect(ValueError, "non-finite value", fit, **{where: poisoned(data, {"x": X, "y": Y}[where], value)})


@case("fit", "empty")
def _(data, tmp):
    expect(ValueError, "at least one row", fit, x=np.ones((0, 3)), y=np.ones((0, 2)))


@case("fit", "dtype")
def _(data, tmp):
    where = data.draw(st.sampled_from(["x", "y"]))
    expect(
        TypeError,
        "must be a numeric array",
        fit,
        **{where: of_dtype(data.draw(bad_dtypes), (10, 3 if where == "x" else 2))},
    )


@case("fit", "overflow")
def _(data, tmp):
    if data.draw(st.booleans()):
        expect(ValueError, r"epochs must be in \[1, 2147483647\]", fit, epochs=data.draw(huge_ints))
    else:
        expect(
            ValueError,
            "outside the int32 range",
            fit,
            y=np.full(10, data.draw(huge_ints)),
            loss="softmax_cross_entropy",
        )


@case("fit", "labels")
def _(data, tmp):
    expect(
        ValueError,
        r"labels must lie in \[0, 2\)|needs integer class labels",
        fit,
        y=bad_labels(data, 2),
        loss="softmax_cross_entropy",
    )


@case("fit", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(11, 10**9)))
    expect(ValueError, r"batch_size must be in \[1, 10\]", fit, batch_size=size)


@case("fit", "learning_rate")
def _(data, tmp):
    expect(ValueError, "learning_rate must be a finite number > 0", fit, learning_rate=data.draw(bad_lrs))


@case("fit", "name")
def _(data, tmp):
    field, known = data.draw(
        st.sampled_from([("loss", losses.LOSSES), ("optimizer", jaxnn.optim.OPTIMIZERS), ("metrics", metrics.METRICS)])
    )
    name = data.draw(st.text(max_size=10).filter(lambda s: s not in known))
    noun = {"loss": "loss", "optimizer": "optimizer", "metrics": "metric"}[field]
    expect(ValueError, f"unknown {noun} .*; expected one of", fit, **{field: [name] if field == "metrics" else name})


# fit_many -----------------------------------------------------------------------------


@case("fit_many", "rank")
def _(data, tmp):
    expect(ValueError, r"x must be 2-D", many, x=np.ones(data.draw(bad_ranks)))


@case("fit_many", "length")
def _(data, tmp):
    lrs = data.draw(st.lists(st.floats(0.01, 1), min_size=2, max_size=4))
    expect(
        ValueError,
        "disagree on the number of models",
        many,
        hyperparams={"learning_rate": lrs},
        num_models=len(lrs) + 1,
    )


@case("fit_many", "nonfinite")
def _(data, tmp):
    if data.draw(st.booleans()):
        expect(ValueError, "non-finite value", many, x=poisoned(data, X, data.draw(nonfinite)))
    else:
        expect(
            ValueError,
            "must be finite float32 numbers",
            many,
            hyperparams={"momentum": [0.5, data.draw(nonfinite)]},
            optimizer="momentum",
        )


@case("fit_many", "empty")
def _(data, tmp):
    expect(ValueError, "at least one row", many, x=np.ones((0, 3)), y=np.ones((0, 2)))


@case("fit_many", "overflow")
def _(data, tmp):
    expect(
        ValueError,
        r"num_models must be in \[1, 2147483647\]|elements in one array",
        many,
        num_models=data.draw(st.integers(2**27, 2**40)),
    )


@case("fit_many", "labels")
def _(data, tmp):
    expect(
        ValueError,
        r"labels must lie in \[0, 2\)|needs integer class labels",
        many,
        y=bad_labels(data, 2),
        loss="softmax_cross_entropy",
    )


@case("fit_many", "batch_size")
def _(data, tmp):
    expect(ValueError, r"batch_size must be in \[1, 10\]", many, batch_size=data.draw(st.sampled_from([0, -1, 11, 99])))


@case("fit_many", "learning_rate")
def _(data, tmp):
    lr = data.draw(bad_lrs)
    expect(
        ValueError,
        "learning_rate must be > 0|must be finite float32 numbers",
        many,
        hyperparams={"learning_rate": [0.1, lr]},
    )


@case("fit_many", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=10).filter(lambda s: s not in jaxnn.optim.OPTIMIZERS))
    expect(ValueError, "fit_many needs an optimizer name, one of", many, optimizer=name)


# predict and evaluate -----------------------------------------------------------------

predictors = st.sampled_from(["predict", "evaluate"])


def predict_or_evaluate(which, x, **kw):
    if which == "predict":
        return jaxnn.predict(MODEL, PARAMS, x, **kw)
    return jaxnn.evaluate(MODEL, PARAMS, x, np.ones((len(x), 2)), loss="mse", **kw)


@case("predict", "rank")
def _(data, tmp):
    expect(ValueError, r"x must be 2-D", jaxnn.predict, MODEL, PARAMS, np.ones(data.draw(bad_ranks)))


@case("predict", "length")
def _(data, tmp):
    features = data.draw(st.integers(1, 9).filter(lambda f: f != 3))
    expect(
        ValueError,
        "features but the first layer expects 3",
        predict_or_evaluate,
        data.draw(predictors),
        np.ones((4, features)),
    )


@case("predict", "nonfinite")
def _(data, tmp):
    expect(
        ValueError,
        "non-finite value",
        predict_or_evaluate,
        data.draw(predictors),
        poisoned(data, X, data.draw(nonfinite)),
    )


@case("predict", "empty")
def _(data, tmp):
    expect(ValueError, "at least one row", predict_or_evaluate, data.draw(predictors), np.ones((0, 3)))


@case("predict", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "must be a numeric array",
        predict_or_evaluate,
        data.draw(predictors),
        of_dtype(data.draw(bad_dtypes), (4, 3)),
    )


@case("predict", "batch_size")
def _(data, tmp):
    expect(
        ValueError,
        "batch_size must be >= 1",
        predict_or_evaluate,
        data.draw(predictors),
        X,
        batch_size=data.draw(st.integers(-5, 0)),
    )


# checkpoint.restore -------------------------------------------------------------------


def saved(tmp: Path) -> Path:
    path = tmp / "good.jaxnn"
    if not path.exists():
        checkpoint.save(path, PARAMS, metadata={"note": "hardened"})
    return path


@case("restore", "bytes")
def _(data, tmp):
    good = saved(tmp)
    raw = good.read_bytes()
    how = data.draw(st.sampled_from(["random", "truncated", "flipped", "padded"]))
    if how == "random":
        bad = data.draw(st.binary(max_size=2000))
    elif how == "truncated":
        bad = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flipped":
        i = data.draw(st.integers(0, len(raw) - 1))
        bad = raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1 :]
    else:
        bad = raw + data.draw(st.binary(min_size=1, max_size=50))
    path = tmp / "bad.jaxnn"
    path.write_bytes(bad)
    expect(
        checkpoint.CheckpointError,
        "not a jaxnn checkpoint|truncated|corrupted|padded|header|version",
        checkpoint.restore,
        path,
        PARAMS,
    )
    assert good.read_bytes() == raw  # the good file is untouched


@case("restore", "length")
def _(data, tmp):
    width = data.draw(st.integers(1, 9).filter(lambda w: w != 4))
    expect(
        checkpoint.CheckpointError,
        "does not match this model/optimizer",
        checkpoint.restore,
        saved(tmp),
        jaxnn.mlp([3, width, 2]).init(K),
    )


@case("restore", "dtype")
def _(data, tmp):
    template = jax.tree.map(lambda p: p.astype(data.draw(st.sampled_from([np.float16, np.int32]))), PARAMS)
    expect(checkpoint.CheckpointError, "does not match this model/optimizer", checkpoint.restore, saved(tmp), template)


# scikit-learn estimators --------------------------------------------------------------

pytest.importorskip("sklearn")
from jaxnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

estimators = st.sampled_from([MLPRegressor, MLPClassifier])


def est_fit(cls, x=X, y=None, **params):
    y = (LABELS if cls is MLPClassifier else Y[:, 0]) if y is None else y
    return cls(hidden_layer_sizes=(4,), max_iter=2, **params).fit(x, y)


@case("sklearn", "rank")
def _(data, tmp):
    expect(ValueError, "Expected 2D array", est_fit, data.draw(estimators), x=np.ones(10))


@case("sklearn", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    expect(ValueError, "inconsistent numbers of samples", est_fit, data.draw(estimators), y=np.arange(n) % 2)


@case("sklearn", "nonfinite")
def _(data, tmp):
    expect(
        ValueError,
        "Input X contains (NaN|infinity)",
        est_fit,
        data.draw(estimators),
        x=poisoned(data, X, data.draw(nonfinite)),
    )


@case("sklearn", "empty")
def _(data, tmp):
    expect(ValueError, r"0 sample\(s\)", est_fit, data.draw(estimators), x=np.ones((0, 3)), y=np.ones(0))


@case("sklearn", "dtype")
def _(data, tmp):
    expect(
        (ValueError, TypeError),
        "could not convert|Complex data not supported",
        est_fit,
        data.draw(estimators),
        x=of_dtype(data.draw(st.sampled_from(["str", "complex"]))),
    )


@case("sklearn", "overflow")
def _(data, tmp):
    x = poisoned(data, X, 0).astype(np.float64)
    x[0, 0] = data.draw(st.floats(1e39, 1e300))
    expect(ValueError, "beyond float32's range", est_fit, data.draw(estimators), x=x)


@case("sklearn", "labels")
def _(data, tmp):
    y = LABELS + data.draw(st.floats(0.1, 0.9))
    expect(ValueError, "Unknown label type", est_fit, MLPClassifier, y=y)


@case("sklearn", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(11, 10**6)))
    expect(
        ValueError,
        r"batch_size must be >= 1|larger than the 10 training rows",
        est_fit,
        data.draw(estimators),
        batch_size=size,
    )


@case("sklearn", "learning_rate")
def _(data, tmp):
    expect(
        ValueError,
        r"learning_rate_init must be a finite number in \(0",
        est_fit,
        data.draw(estimators),
        learning_rate_init=data.draw(bad_lrs),
    )


@case("sklearn", "name")
def _(data, tmp):
    field = data.draw(st.sampled_from(["solver", "activation"]))
    name = data.draw(st.text(max_size=8).filter(lambda s: s not in ("adam", "sgd", "relu", "tanh", "identity")))
    expect(ValueError, f"{field} must be", est_fit, data.draw(estimators), **{field: name})


# experiment command lines -------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
import classify_iris  # noqa: E402


def cli(argv, tmp):
    """Runs the iris experiment's command line; returns (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        experiment.main([*argv, "--out", str(tmp / "run"), "--no-progress"], classify_iris.CONFIG)
    assert not (tmp / "run").exists(), "a failed command line left a run folder"
    return exit_.value.code, err.getvalue()


def expect_cli(argv, tmp, match):
    code, err = cli(argv, tmp)
    message = code if isinstance(code, str) else err
    assert code != 0 and re.search(match, message), (argv, code, err)


@case("cli", "rank")
def _(data, tmp):
    expect_cli(["--hidden", data.draw(st.sampled_from(["", ",", "4,,4", "[4]"]))], tmp, "expected sizes like 4,4")


@case("cli", "dtype")
def _(data, tmp):
    flag = data.draw(st.sampled_from(["--epochs", "--batch-size", "--seed"]))
    expect_cli([flag, data.draw(st.sampled_from(["x", "1.5", "1e3", "ten"]))], tmp, "invalid int value")


@case("cli", "overflow")
def _(data, tmp):
    expect_cli(["--epochs", str(data.draw(huge_ints))], tmp, r"error: epochs must be in \[1, 2147483647\]")


@case("cli", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(121, 10**6)))
    expect_cli(["--batch-size", str(size)], tmp, r"error: batch_size( must be >= 1|=\d+ is more than the 120 training)")


@case("cli", "learning_rate")
def _(data, tmp):
    lr = data.draw(st.sampled_from(["-0.1", "0", "nan", "inf", "-inf"]))
    expect_cli([f"--learning-rate={lr}"], tmp, "error: learning_rate must be a finite number > 0")


@case("cli", "name")
def _(data, tmp):
    name = data.draw(st.text("abcxyz", min_size=1, max_size=6).filter(lambda s: s not in jaxnn.optim.OPTIMIZERS))
    expect_cli(["--optimizer", name], tmp, "invalid choice")


# the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "kind"), sorted(CASES), ids=[f"{e}-{k}" for e, k in sorted(CASES)])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_input_gets_a_clear_error(entry, kind, data, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp() / f"{entry}-{kind}"  # a folder per case, shared by its examples
    tmp.mkdir(exist_ok=True)
    CASES[(entry, kind)](data, tmp)


def test_readme_states_the_table_size():
    entries = sorted({e for e, _ in CASES})
    kinds = sorted({k for _, k in CASES})
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    claim = f"{len(CASES)} cases ({len(entries)} entry points x {len(kinds)} kinds of bad input)"
    assert claim in readme, f"README should say: {claim}"
