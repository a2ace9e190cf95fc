"""fit, predict and evaluate take Equinox modules (an optional extra) directly."""

import equinox as eqx
import jax
import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close

import jaxnn


class DropoutMLP(eqx.Module):
    hidden: eqx.nn.Linear
    drop: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.hidden, self.out = eqx.nn.Linear(64, 64, key=k1), eqx.nn.Linear(64, 10, key=k2)
        self.drop = eqx.nn.Dropout(0.2)

    def __call__(self, x, *, key=None):
        return self.out(self.drop(jax.nn.relu(self.hidden(x)), key=key))


class BatchNormNet(eqx.Module):
    hidden: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    drop: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.hidden, self.out = eqx.nn.Linear(64, 64, key=k1), eqx.nn.Linear(64, 10, key=k2)
        self.norm, self.drop = (
            eqx.nn.BatchNorm(64, axis_name="batch", mode="batch"),
            eqx.nn.Dropout(0.2),
        )

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.hidden(x), state)
        return self.out(self.drop(jax.nn.relu(h), key=key)), state


@pytest.fixture(scope="module")
def digits():
    ds = jaxnn.load_dataset("digits")
    return jaxnn.train_test_split(jax.random.key(0), ds.x / 16, ds.y, 0.25)


KW = dict(
    loss="softmax_cross_entropy",
    key=jax.random.key(1),
    optimizer=jaxnn.optim.adam(1e-3),
    batch_size=32,
    epochs=15,
    metrics=["accuracy"],
    progress=False,
)


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_equinox_mlp_with_dropout_reaches_93_percent_on_digits(digits):
    xtr, xte, ytr, yte = digits
    model = DropoutMLP(jax.random.key(0))
    before = jaxnn.evaluate(
        model, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    r = jaxnn.fit(model, None, xtr, ytr, validation=(xte, yte), **KW)
    after = jaxnn.evaluate(
        model, r.params, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    assert after["accuracy"] >= 0.93 and after["loss"] < before["loss"]
    np.testing.assert_allclose(
        after["loss"], r.history["val_loss"][-1], rtol=1e-5
    )  # inference mode in both
    trained = eqx.combine(r.params, eqx.partition(model, eqx.is_inexact_array)[1])
    inference = eqx.nn.inference_mode(trained)
    assert_close(
        jax.vmap(inference)(xte[:5]), jaxnn.predict(model, r.params, xte[:5]), rtol=1e-5, atol=1e-5
    )
    again = jaxnn.fit(model, None, xtr, ytr, validation=(xte, yte), **KW)
    assert_bitwise_equal(again.params, r.params)  # per-example dropout keys from the run key


def test_equinox_batch_norm_state_trains_to_95_percent_on_digits(digits):
    xtr, xte, ytr, yte = digits
    model, state = eqx.nn.make_with_state(BatchNormNet)(jax.random.key(0))
    r = jaxnn.fit(model, state, xtr, ytr, validation=(xte, yte), **KW)
    after = jaxnn.evaluate(
        model, r.params, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    assert after["accuracy"] >= 0.95, after
    assert set(r.params) == {"params", "eqx_state"} and isinstance(
        r.params["eqx_state"], eqx.nn.State
    )
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
        jax.tree.leaves(r.params["eqx_state"]), jax.tree.leaves(state), strict=True)]  # fmt: skip
    assert max(moved) > 0  # the running statistics were updated


def test_equinox_bad_params_and_sweeps_are_refused(digits):
    xtr, _, ytr, _ = digits
    with pytest.raises(TypeError, match="an Equinox model takes params=None, its eqx.nn.State"):
        jaxnn.fit(
            DropoutMLP(jax.random.key(0)), {"w": 1}, xtr, ytr, loss="mse", key=jax.random.key(0)
        )
    with pytest.raises(TypeError, match="Equinox module directly"):
        jaxnn.fit_many(
            DropoutMLP(jax.random.key(0)), None, xtr, ytr, loss="mse", key=jax.random.key(0)
        )
