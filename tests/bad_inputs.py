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
from helpers import expect_rejected
from hypothesis import HealthCheck, given, settings

import jaxnn
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
    "header": "a checkpoint header with a valid checksum and a missing, mistyped or forged field",
    "option": "an option value of the wrong type or range",
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
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_bad_input_gets_a_clear_error(entry, kind, data, tmp_path_factory):
        tmp = tmp_path_factory.getbasetemp() / f"{entry}-{kind}"  # a folder per case, shared by its examples
        tmp.mkdir(exist_ok=True)
        CASES[(entry, kind)](data, tmp)

    return test_bad_input_gets_a_clear_error


K = jax.random.key(0)
MODEL = jaxnn.mlp([3, 4, 2])
PARAMS = MODEL.init(K)
X = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
Y = np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)
LABELS = np.arange(10) % 2


CHECKPOINTS = Path(tempfile.mkdtemp()) / "checkpoints"  # fit is told to save here; a failed fit must not


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
    return fit_many(MODEL, x, y, **_settings(kw))


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
