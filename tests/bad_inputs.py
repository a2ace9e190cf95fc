"""The bad-input tables' shared parts (the tables live beside each module's tests).

Each (entry point, kind of bad input) case must end in a ValueError or TypeError whose
message names what was wrong and what was expected, before anything is compiled,
trained or written: never a silent wrong result, a crash of the interpreter, or a
damaged file. ``case`` registers a case; ``bad_input_test(entries)`` makes a test
module's parametrized test over its own entries. The README quotes the table's size
(tests/test_readme.py keeps it true).
"""

import tempfile
from pathlib import Path

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from helpers import examples, expect_rejected
from hypothesis import HealthCheck, given, settings

import jaxnn
from jaxnn import fit_many

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
    "header": "a checkpoint header with a valid checksum and a missing, mistyped or forged field",
}
CASES = {}


def case(entry: str, kind: str):
    """Registers ``fn(data, tmp)``: hypothesis's ``data`` to draw from, and a folder."""
    assert kind in KINDS
    return lambda fn: CASES.setdefault((entry, kind), fn)


def bad_input_test(*entries: str):
    """The test of every registered case of ``entries`` (call it after registering)."""
    keys = sorted(k for k in CASES if k[0] in entries)

    @pytest.mark.parametrize(("entry", "kind"), keys, ids=[f"{e}-{k}" for e, k in keys])
    @settings(
        max_examples=examples(8),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def test_bad_input_gets_a_clear_error(entry, kind, data, tmp_path_factory):
        tmp = (
            tmp_path_factory.getbasetemp() / f"{entry}-{kind}"
        )  # a folder per case, shared by its examples
        tmp.mkdir(exist_ok=True)
        CASES[(entry, kind)](data, tmp)

    return test_bad_input_gets_a_clear_error


K = jax.random.key(0)
MODEL = jaxnn.mlp([3, 4, 2])
PARAMS = MODEL.init(K)
X = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
Y = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
LABELS = np.arange(10) % 2


CHECKPOINTS = (
    Path(tempfile.mkdtemp()) / "checkpoints"
)  # fit is told to save here; a failed fit must not


def expect(error, match, fn, *args, **kwargs):
    """``fn`` rejects its input: nothing compiled, no checkpoint written."""
    expect_rejected(error, match, fn, *args, watch=[CHECKPOINTS], **kwargs)


def _settings(kw: dict) -> dict:
    return {
        "loss": "mse",
        "key": K,
        "progress": False,
        "batch_size": 2,
        "checkpoints": jaxnn.Checkpoints(CHECKPOINTS),
        **kw,
    }


def fit(x=X, y=Y, **kw):
    return jaxnn.fit(MODEL, PARAMS, x, y, **_settings(kw))


def many(x=X, y=Y, **kw):
    return fit_many(MODEL, None, x, y, **_settings(kw))


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


# The options of fit and fit_many: every row runs on every run, for each entry point that
# takes the option (``option_test``). A value is made inside the check (an invalid option
# value refuses to be made), so each row is a function that makes it.
OPTIONS = {
    "checkpoints": [
        (lambda: "not a Checkpoints value", TypeError, "checkpoints must be a jaxnn.Checkpoints"),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, keep=1.5),
            TypeError,
            "checkpoints.keep must be an int",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, keep=0),
            ValueError,
            r"checkpoints.keep must be >= 1",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, every=0),
            ValueError,
            r"checkpoints.every must be >= 1",
        ),
        (lambda: jaxnn.Checkpoints(3), TypeError, "checkpoints.dir must be a folder path"),
        (lambda: jaxnn.Checkpoints(""), ValueError, "checkpoints.dir is empty"),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, metadata={"f": print}),
            TypeError,
            "JSON-serialisable",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, metadata={"x": float("nan")}),
            TypeError,
            "JSON-serialisable",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, metadata={"notes": "x" * (1 << 20)}),
            ValueError,
            r"checkpoints.metadata is \d+ bytes as JSON; at most 1048576",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, overwrite="yes"),
            TypeError,
            "overwrite must be True or False",
        ),
        (
            lambda: jaxnn.Checkpoints(CHECKPOINTS, run_id="../x"),
            ValueError,
            "run_id must be letters and digits",
        ),
    ],
    "log_dir": [(lambda: 3, TypeError, "log_dir must be a folder path")],
    "tuning": [
        (lambda: {"unroll": 2}, TypeError, "tuning must be a jaxnn.Tuning"),
        (
            lambda: jaxnn.Tuning(epochs_per_call=0),
            ValueError,
            r"tuning.epochs_per_call must be in \[1, 2147483647\]",
        ),
        (
            lambda: jaxnn.Tuning(epochs_per_call=2**40),
            ValueError,
            r"tuning.epochs_per_call must be in \[1, 2147483647\], got 1099511627776",
        ),
        (lambda: jaxnn.Tuning(unroll=1.5), TypeError, "tuning.unroll must be an int"),
        (
            lambda: jaxnn.Tuning(eval_batch_size=-1),
            ValueError,
            "tuning.eval_batch_size must be >= 1",
        ),
        (
            lambda: jaxnn.Tuning(drop_remainder="yes"),
            TypeError,
            "tuning.drop_remainder must be a bool",
        ),
        (
            lambda: jaxnn.Tuning(gather="batch"),
            ValueError,
            "tuning.gather must be 'step' or 'epoch'",
        ),
        (
            lambda: jaxnn.Tuning(compute_dtype="int8"),
            ValueError,
            "compute_dtype must be 'auto' or one of",
        ),
    ],
    "validation": [
        (lambda: True, TypeError, "validation must be a pair"),
        (lambda: "0.2", TypeError, "validation must be a pair"),
        (lambda: (X,), TypeError, "validation must be a pair"),
        (lambda: 1.0, ValueError, r"validation fraction must be in \(0, 1\)"),
        (lambda: 0.01, ValueError, "leaves an empty split"),
    ],
    "early_stopping": [
        (lambda: "val_loss", TypeError, "early_stopping must be a jaxnn.EarlyStopping"),
        (
            lambda: jaxnn.EarlyStopping(patience=0),
            ValueError,
            r"early_stopping.patience must be in \[1, 2147483647\]",
        ),
        (
            lambda: jaxnn.EarlyStopping(patience=2**40),
            ValueError,
            r"early_stopping.patience must be in \[1, 2147483647\], got 1099511627776",
        ),
        (
            lambda: jaxnn.EarlyStopping(mode="up"),
            ValueError,
            "early_stopping.mode must be 'min', 'max' or 'auto'",
        ),
        (
            lambda: jaxnn.EarlyStopping(min_delta=-1.0),
            ValueError,
            "early_stopping.min_delta must be a number >= 0",
        ),
        (
            lambda: jaxnn.EarlyStopping("val_accuracy"),
            ValueError,
            "monitor='val_accuracy' is not recorded",
        ),
    ],
    "devices": [
        (lambda: 0, ValueError, r"devices=0: expected a count in \[1, "),
        (lambda: "gpu", TypeError, "devices must be None, a count or a sequence"),
        (
            lambda: True,
            TypeError,
            "devices must be None, a count or a sequence of jax devices, not a bool",
        ),
        (
            lambda: [jax.devices()[0]] * 2,
            ValueError,
            "devices lists a device more than once",
        ),
    ],
    "key": [(lambda: 0, TypeError, "key must be a PRNG key")],
    "optimizer": [
        (lambda: 0.1, TypeError, "optimizer must be a name"),
        (
            lambda: jaxnn.optim.Optimizer("sgd", {"b1": 0.9}),
            ValueError,
            "sgd has no hyperparameter 'b1'",
        ),
        (lambda: jaxnn.optim.adam(eps=-1.0), ValueError, "eps must be a finite number > 0"),
        (lambda: jaxnn.optim.adamw(eps=0.0), ValueError, "eps must be a finite number > 0"),
        (lambda: jaxnn.optim.adam(b1=2.0), ValueError, r"b1 must be in \[0.0, 1.0\)"),
        (lambda: jaxnn.optim.sgd("0.1"), TypeError, "learning_rate must be a number"),
        (
            lambda: jaxnn.optim.sgd([[0.1, 0.2]]),
            ValueError,
            "must be a number or a non-empty 1-D sequence",
        ),
        (lambda: jaxnn.optim.sgd([]), ValueError, "must be a number or a non-empty 1-D sequence"),
        (lambda: jaxnn.optim.sgd([1e300]), ValueError, r"within float32's range, got \[1e\+300\]"),
        (lambda: jaxnn.optim.sgd(1e-50), ValueError, "underflows to 0 in float32"),
    ],
    "sample_weight": [(lambda: np.ones(3), ValueError, r"sample_weight must have shape \(10,\)")],
    "epochs": [(lambda: 0, ValueError, r"epochs must be in \[1, 2147483647\]")],
}
FIT_ONLY = {
    "resume": [
        (lambda: 42, TypeError, "resume must be a checkpoint path, a FitResult or a TrainState"),
        (
            lambda: jaxnn.TrainState(PARAMS[:1], None, 0, 0, K),
            ValueError,
            "resume's params do not have",
        ),
    ],
    "optimizer": [
        (
            lambda: jaxnn.optim.sgd([0.1, 0.2]),
            ValueError,
            "one value per model; fit trains one model",
        )
    ],
}
MANY_ONLY = {
    "resume": [
        (lambda: 3, TypeError, "fit_many's resume must be a checkpoint path or a ManyResult")
    ],
    "num_models": [
        (lambda: 0, ValueError, r"num_models must be in \[1, "),
        (lambda: 2.5, TypeError, "num_models must be an int"),
    ],
    "dropout": [(lambda: [0.1, 1.0], ValueError, r"dropout must be a rate in \[0, 1\)")],
}


def option_rows(entry: str) -> list[tuple[str, dict, int]]:
    own = FIT_ONLY if entry == "fit" else MANY_ONLY
    rows = [(name, OPTIONS, i) for name in sorted(OPTIONS) for i in range(len(OPTIONS[name]))]
    rows += [(name, own, i) for name in sorted(own) for i in range(len(own[name]))]
    return rows


def option_test(entry: str):
    """The test of every row of the option tables that ``entry`` ("fit" or "fit_many") takes."""
    call = fit if entry == "fit" else many
    rows = option_rows(entry)
    ids = [f"{name}-{'own' if table is not OPTIONS else 'shared'}-{i}" for name, table, i in rows]

    @pytest.mark.parametrize(("name", "table", "i"), rows, ids=ids)
    def test_a_bad_option_gets_a_clear_error(name, table, i):
        make, error, match = table[name][i]
        expect(error, match, lambda: call(**{name: make()}))

    return test_a_bad_option_gets_a_clear_error
