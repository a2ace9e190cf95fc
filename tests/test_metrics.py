import jax.numpy as jnp
import numpy as np
import pytest

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
