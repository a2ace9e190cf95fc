import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_bitwise_equal

import jaxnn
from jaxnn import data as D


def test_validate_converts_and_passes_good_data():
    x, y = D.validate(np.arange(6).reshape(3, 2), [0, 1, 1])
    assert x.dtype == np.float32 and y.dtype == np.int32
    x, y = D.validate(np.ones((3, 2), np.float64), np.ones((3, 1)))
    assert x.dtype == np.float32 and y.dtype == np.float32


@pytest.mark.parametrize(
    ("x", "y", "err", "match"),
    [
        (np.ones(3), None, ValueError, r"must be 2-D .*x\[:, None\]"),
        (np.ones((0, 3)), None, ValueError, "at least one row"),
        (np.array([["a", "b"]]), None, TypeError, "numeric"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), None, ValueError, "row 0, column 1"),
        (np.array([[1.0, 2.0], [np.inf, 3.0]]), None, ValueError, "row 1, column 0"),
        (
            np.array([[1e300, 1.0]]),
            None,
            ValueError,
            "beyond float32's range",
        ),  # float64 overflowing float32
        (np.ones((3, 2)), np.ones(4), ValueError, r"shape \(3,\)"),
        (np.ones((3, 2)), np.array([1.0, np.nan, 2.0]), ValueError, "row 1"),
        (np.ones((2, 2)), np.array([2**40, 1]), ValueError, "int32"),
        ([[1, 2], [3]], None, TypeError, "could not convert"),
    ],
)
def test_validate_rejects(x, y, err, match):
    with pytest.raises(err, match=match):
        D.validate(x, y)


def test_train_test_split(key):
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10, dtype=np.float32)
    xtr, xte, ytr, yte = D.train_test_split(key, x, y, 0.3)
    assert xtr.shape == (7, 2) and xte.shape == (3, 2)
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(10))  # nothing lost
    np.testing.assert_array_equal(xtr[:, 0] / 2, ytr)  # rows stay paired
    again = D.train_test_split(key, x, y, 0.3)
    np.testing.assert_array_equal(again[0], xtr)
    for frac in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError):
            D.train_test_split(key, x, y, frac)


def test_standardize_uses_training_statistics_only():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    test = np.array([[5.0, 6.0]])
    tr, te = D.standardize(train, test)
    np.testing.assert_allclose(tr, [[-1.0, 0.0], [1.0, 0.0]])  # constant column: scale 1
    np.testing.assert_allclose(te, [[3.0, 1.0]])
    with pytest.raises(ValueError, match="fitted on 2"):
        D.Standardizer.fit(train)(np.ones((1, 3)))


def test_one_hot():
    np.testing.assert_array_equal(D.one_hot(np.array([0, 2]), 3), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        D.one_hot(np.array([3]), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        D.one_hot(np.array([0.5]), 3)


def test_make_regression_is_the_seeds_data(key):
    x, y = D.make_regression(key)
    assert x.shape == (1000, 3) and y.shape == (1000, 1)
    assert ((y > 0) & (y < 1)).all()
    np.testing.assert_array_equal(D.make_regression(key)[1], y)
    # nonlinear: a straight line leaves a clear part of the variance unexplained
    line = jaxnn.linear_regression(x, y)(x)
    r2 = 1 - ((line - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 < 0.6
    with pytest.raises(ValueError):
        D.make_regression(key, n=0)


@pytest.mark.parametrize("name", D.DATASETS)
def test_bundled_datasets(name):
    ds = D.load_dataset(name)
    x, y = D.validate(ds.x, ds.y)
    assert x.shape[1] == len(ds.feature_names)
    if ds.task == "regression":
        assert y.ndim == 2
    else:
        assert y.dtype == np.int32 and y.max() + 1 == len(ds.target_names)
        assert ds.task == ("binary" if len(ds.target_names) == 2 else "multiclass")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*iris"):
        D.load_dataset("mnist")


def test_linear_baseline_checks_features(key):
    predict = jaxnn.linear_regression(np.ones((4, 2)) * np.arange(4)[:, None], np.arange(4.0))
    assert predict(np.ones((1, 2))).shape == (1,)
    with pytest.raises(ValueError, match="fitted on 2"):
        predict(np.ones((1, 3)))


def test_validate_keeps_device_arrays_on_device():

    x, y = D.validate(jnp.ones((4, 2), jnp.int32), jnp.array([0, 1, 1, 0]))
    assert isinstance(x, jax.Array) and x.dtype == jnp.float32 and isinstance(y, jax.Array)
    with pytest.raises(ValueError, match="row 2, column 1"):
        D.validate(jnp.ones((4, 2)).at[2, 1].set(jnp.nan))
    with pytest.raises(TypeError, match="PRNG keys"):
        D.validate(jax.random.split(jax.random.key(0), 4))


def test_device_arrays_are_checked_once_while_they_live(monkeypatch):
    calls = []
    reduce = D._device_summary
    monkeypatch.setattr(D, "_device_summary", lambda a: calls.append(a.shape) or reduce(a))
    x = jnp.ones((8, 3))
    for _ in range(3):
        D.validate(x)
    assert calls == [(8, 3)]  # jax arrays are immutable: one device round trip
    assert D.summary(jnp.array([3, -2, 7])) == (True, -2, 7)
    assert not D.summary(x.at[1, 1].set(jnp.inf)).finite
    key = id(x)
    del x
    assert key not in D._summaries  # forgotten with the array


def test_host_data_is_uploaded_once_per_content(monkeypatch):
    monkeypatch.setattr(D, "_caches_uploads", lambda: True)  # what an accelerator does
    D.clear_uploads()
    x = np.random.default_rng(0).standard_normal((2048, 128))  # float64, 2 MiB
    first, _ = D.validate(x, to_device=True)
    assert isinstance(first, jax.Array) and first.dtype == jnp.float32
    assert D.validate(x, to_device=True)[0] is first  # same bytes: no upload, no check
    assert isinstance(D.validate(x)[0], np.ndarray)  # only when asked (fit asks)
    x[5, 3] = np.nan  # changed in place: uploaded and checked again
    with pytest.raises(ValueError, match="row 5, column 3"):
        D.validate(x, to_device=True)
    x[5, 3] = 2.5
    again, _ = D.validate(x, to_device=True)
    assert again is not first and float(again[5, 3]) == 2.5
    np.testing.assert_array_equal(np.asarray(again), x.astype(np.float32))
    small = np.ones((4, 3))
    assert isinstance(
        D.validate(small, to_device=True)[0], np.ndarray
    )  # below the size worth caching
    # float64, so each upload is a float32 copy (a float32 array's CPU "device copy" would alias it)
    arrays = [np.full((2048, 128), float(i)) for i in range(D.UPLOAD_CACHE_ENTRIES + 2)]
    for a in arrays:
        D.validate(a, to_device=True)
    assert len(D._uploads) == D.UPLOAD_CACHE_ENTRIES  # bounded: the oldest go first
    del arrays, a, x
    assert not D._uploads  # an upload lives only as long as its host array


def test_fit_from_cached_uploads_equals_fit_from_host(monkeypatch, key):
    x, y = jaxnn.make_regression(key, n=4096, features=64)
    x, y = np.asarray(x, np.float64), np.asarray(y)
    model = jaxnn.mlp([64, 8, 1])
    kw = dict(loss="mse", batch_size=256, epochs=2, key=key, progress=False)
    plain = jaxnn.fit(model, model.init(key), x, y, **kw)
    monkeypatch.setattr(D, "_caches_uploads", lambda: True)
    cached = [jaxnn.fit(model, model.init(key), x, y, **kw) for _ in range(2)]
    assert id(x) in D._uploads
    for r in cached:
        assert_bitwise_equal(r.params, plain.params)


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import (  # noqa: E402
    LABELS,
    K,
    X,
    bad_dtypes,
    bad_input_test,
    bad_labels,
    bad_ranks,
    case,
    expect,
    huge_ints,
    nonfinite,
    of_dtype,
    poisoned,
)

# data utilities -----------------------------------------------------------------------


@case("data", "rank")
def _(data, tmp):
    shape = data.draw(bad_ranks)
    expect(ValueError, r"x must be 2-D \(samples, features\)", jaxnn.validate, np.ones(shape))


@case("data", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    for fn in (
        jaxnn.validate,
        lambda x, y: jaxnn.train_test_split(K, x, y),
    ):  # every variant, every run
        expect(ValueError, r"y must have shape \(10,\) or \(10, outputs\)", fn, X, np.ones(n))


@case("data", "nonfinite")
def _(data, tmp):
    for fn in (jaxnn.validate, jaxnn.standardize, jaxnn.Standardizer.fit):
        expect(
            ValueError,
            r"has a non-finite value \(.*\) at row \d+, column \d+; expected finite",
            fn,
            poisoned(data, X, data.draw(nonfinite)),
        )


@case("data", "empty")
def _(data, tmp):
    for shape in ((0, 3), (3, 0), (0, 0)):
        expect(
            ValueError, "must have at least one row and one column", jaxnn.validate, np.ones(shape)
        )


@case("data", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        r"must be a numeric array \(int or float\)",
        jaxnn.validate,
        of_dtype(data.draw(bad_dtypes)),
    )


@case("data", "overflow")
def _(data, tmp):
    expect(
        ValueError,
        "integer labels outside the int32 range",
        jaxnn.validate,
        X,
        np.full(10, data.draw(huge_ints)),
    )
    expect(
        ValueError,
        r"value beyond float32's range \(-?[0-9.e+]+\)",
        jaxnn.validate,
        poisoned(data, X, 0).astype(np.float64) * 1e300,
    )
    expect(ValueError, "elements in one array", jaxnn.one_hot, LABELS, data.draw(huge_ints))
    expect(ValueError, "elements in one array", jaxnn.make_regression, K, n=data.draw(huge_ints))


@case("data", "labels")
def _(data, tmp):
    labels = bad_labels(data, 2)
    expect(
        ValueError,
        r"labels must (lie in \[0, 2\)|be a 1-D integer array)",
        jaxnn.one_hot,
        labels,
        2,
    )


@case("data", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in jaxnn.data.DATASETS))
    expect(ValueError, "unknown dataset .*; expected one of", jaxnn.load_dataset, name)


test_bad_input_gets_a_clear_error = bad_input_test("data")


def test_a_float64_value_beyond_float32_is_named_as_such_not_as_inf():
    x = np.zeros((4, 3))
    x[2, 1] = 1e300
    with pytest.raises(
        ValueError, match=r"x has a value beyond float32's range \(1e\+300\) at row 2, column 1"
    ):
        jaxnn.validate(x)
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"x has a non-finite value \(inf\) at row 2, column 1"):
        jaxnn.validate(x)
