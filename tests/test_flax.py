"""fit, predict and evaluate take Flax modules (linen and nnx) directly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx
from helpers import assert_bitwise_equal

import jaxnn


class SeedNetwork(nn.Module):
    """The seed's 3-4-4-1 network (relu, relu, sigmoid) in linen."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(4)(x))
        x = nn.relu(nn.Dense(4)(x))
        return nn.sigmoid(nn.Dense(1)(x))


class NnxMLP(nnx.Module):
    def __init__(self, sizes, rngs):
        self.layers = nnx.List(nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


@pytest.fixture(scope="module")
def regression():
    return jaxnn.make_regression(jax.random.key(0), n=300)


def test_linen_seed_network_ends_with_the_same_params_as_jaxnn_mlp(regression):
    x, y = regression
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(jax.random.key(1))
    variables = {"params": {f"Dense_{i}": {"kernel": p["w"], "bias": p["b"]} for i, p in enumerate(params)}}
    kw = dict(loss="rmse", key=jax.random.key(2), batch_size=1, epochs=3, learning_rate=0.05, progress=False)
    ours = jaxnn.fit(model, params, x, y, **kw)
    theirs = jaxnn.fit(SeedNetwork(), variables, x, y, **kw)
    as_linen = {"params": {f"Dense_{i}": {"kernel": p["w"], "bias": p["b"]} for i, p in enumerate(ours.params)}}
    assert_bitwise_equal(theirs.params, as_linen)
    np.testing.assert_array_equal(theirs.history["loss"], ours.history["loss"])
    assert ours.history["loss"][-1] < ours.history["loss"][0]
    pred = jaxnn.predict(SeedNetwork(), theirs.params, x)
    assert_bitwise_equal(pred, jaxnn.predict(model, ours.params, x))


def test_linen_module_with_mutable_state_is_refused(regression):
    x, y = regression

    class WithBatchNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.BatchNorm(use_running_average=True)(x))

    variables = WithBatchNorm().init(jax.random.key(0), x[:2])
    with pytest.raises(ValueError, match="exactly one collection, 'params'; got \\['batch_stats', 'params'\\]"):
        jaxnn.fit(WithBatchNorm(), variables, x, y, loss="mse", key=jax.random.key(0), progress=False)


def test_nnx_mlp_trains_to_90_percent_on_iris_and_is_updated_in_place():
    ds = jaxnn.load_dataset("iris")
    xtr, xte, ytr, yte = jaxnn.train_test_split(jax.random.key(0), ds.x, ds.y, 0.3)
    xtr, xte = jaxnn.standardize(xtr, xte)
    module = NnxMLP([4, 16, 3], nnx.Rngs(0))
    before = jaxnn.evaluate(module, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"])
    r = jaxnn.fit(
        module,
        None,
        xtr,
        ytr,
        loss="softmax_cross_entropy",
        key=jax.random.key(1),
        optimizer="adam",
        learning_rate=0.01,
        batch_size=16,
        epochs=60,
        progress=False,
    )
    after = jaxnn.evaluate(module, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"])
    assert after["accuracy"] >= 0.9 and after["loss"] < before["loss"]
    assert_bitwise_equal(nnx.state(module, nnx.Param), r.params)
    assert_bitwise_equal(jnp.argmax(module(jnp.asarray(xte)), 1), jnp.argmax(jaxnn.predict(module, None, xte), 1))


def test_nnx_module_with_non_param_state_is_refused(regression):
    x, y = regression

    class WithBatchNorm(nnx.Module):
        def __init__(self, rngs):
            self.norm = nnx.BatchNorm(3, rngs=rngs)
            self.out = nnx.Linear(3, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(self.norm(x))

    with pytest.raises(ValueError, match="nnx.Param state only; this module also holds"):
        jaxnn.fit(WithBatchNorm(nnx.Rngs(0)), None, x, y, loss="mse", key=jax.random.key(0), progress=False)
    with pytest.raises(TypeError, match="split it first"):
        jaxnn.make_train_step(NnxMLP([3, 1], nnx.Rngs(0)), "mse", jaxnn.optim.transform("sgd"))


def test_resume_from_a_fit_result_continues_a_run_exactly(regression):
    x, y = regression
    model = jaxnn.mlp([3, 8, 1])
    params = model.init(jax.random.key(0))
    kw = dict(loss="mse", key=jax.random.key(1), optimizer="adam", shuffle=False, batch_size=32, progress=False)
    whole = jaxnn.fit(model, params, x, y, epochs=4, **kw)
    first = jaxnn.fit(model, params, x, y, epochs=2, **kw)
    second = jaxnn.fit(model, params, x, y, epochs=4, resume=first, **kw)
    assert_bitwise_equal(second.params, whole.params)
    assert second.epochs_run == 4 and second.history["epoch"].tolist() == [3, 4]
    restarted = jaxnn.fit(model, first.params, x, y, epochs=2, **kw)  # fresh Adam moments differ
    assert not np.array_equal(restarted.params[0]["w"], whole.params[0]["w"])
    with pytest.raises(TypeError, match="resume must be a checkpoint path, a FitResult or a TrainState"):
        jaxnn.fit(model, params, x, y, epochs=1, resume=first.state.opt_state, **kw)
    with pytest.raises(ValueError, match="opt_state does not match this optimizer"):
        jaxnn.fit(model, params, x, y, epochs=3, resume=first, **{**kw, "optimizer": "momentum"})


def test_params_none_is_refused_for_a_jaxnn_model(regression):
    x, y = regression
    with pytest.raises(TypeError, match="params is None"):
        jaxnn.fit(jaxnn.mlp([3, 1]), None, x, y, loss="mse", key=jax.random.key(0))
