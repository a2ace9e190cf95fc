import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import metrics
from jaxnn import metrics as M


def test_binary_accuracy_by_threshold():
    p = jnp.array([[0.9], [0.2], [0.6], [0.4]])
    assert float(M.accuracy(p, jnp.array([1, 0, 0, 0]))) == 0.75
    assert float(M.accuracy(p, jnp.array([[1], [0], [0], [0]]))) == 0.75
    assert float(M.accuracy(p - 0.5, jnp.array([1, 0, 0, 0]), threshold=0.0)) == 0.75
    assert float(M.accuracy(p, jnp.array([1, 0, 0, 0]), jnp.array([1.0, 1.0, 0.0, 1.0]))) == 1.0


def test_multiclass_accuracy_by_argmax():
    p = jnp.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    assert float(M.accuracy(p, jnp.array([0, 1]))) == 0.5
    assert float(M.accuracy(p, jnp.array([[1.0, 0, 0], [0, 0, 1.0]]))) == 1.0
    with pytest.raises(ValueError, match="do not match"):
        M.accuracy(p, jnp.array([0, 1, 2]))


def test_regression_metrics():
    t = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    assert float(M.r2(t, t)) == 1.0
    assert float(M.r2(jnp.full_like(t, 2.5), t)) == pytest.approx(0.0)
    constant = jnp.full_like(
        t, 3.0
    )  # scikit-learn's force_finite: 1 if exact, else 0; NaN after overflow
    assert float(M.r2(constant, constant)) == 1.0 and float(M.r2(t, constant)) == 0.0
    assert np.isnan(float(M.r2(jnp.full_like(t, jnp.inf), t))) and np.isnan(
        float(M.r2(t.at[0].set(jnp.nan), t))
    )
    assert float(M.rmse(t + 1, t)) == pytest.approx(1.0)
    assert float(M.mae(t - 2, t)) == pytest.approx(2.0)
    # weights leave out masked rows
    p = jnp.array([[1.0], [2.0], [3.0], [100.0]])
    assert float(M.r2(p, t, jnp.array([1.0, 1.0, 1.0, 0.0]))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        M.r2(t, t[:, 0])


def test_lookup():
    assert M.get_metric("accuracy") == ("accuracy", M.accuracy)
    assert M.get_metric(np.mean)[0] == "mean"
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        M.get_metric("acc")


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import bad_dtypes, bad_input_test, bad_labels, case, expect, of_dtype  # noqa: E402

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


test_bad_input_gets_a_clear_error = bad_input_test("metrics")
