"""fit, predict and evaluate take Flax modules (linen and nnx) directly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from helpers import assert_bitwise_equal, assert_close

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
        self.layers = nnx.List(
            nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

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
    variables = {
        "params": {f"Dense_{i}": {"kernel": p["w"], "bias": p["b"]} for i, p in enumerate(params)}
    }
    kw = dict(
        loss="rmse",
        key=jax.random.key(2),
        batch_size=1,
        epochs=3,
        optimizer=jaxnn.optim.sgd(0.05),
        progress=False,
    )
    ours = jaxnn.fit(model, params, x, y, **kw)
    theirs = jaxnn.fit(SeedNetwork(), variables, x, y, **kw)
    as_linen = {
        "params": {
            f"Dense_{i}": {"kernel": p["w"], "bias": p["b"]} for i, p in enumerate(ours.params)
        }
    }
    assert_bitwise_equal(theirs.params, as_linen)
    np.testing.assert_array_equal(theirs.history["loss"], ours.history["loss"])
    assert ours.history["loss"][-1] < ours.history["loss"][0]
    pred = jaxnn.predict(SeedNetwork(), theirs.params, x)
    assert_bitwise_equal(pred, jaxnn.predict(model, ours.params, x))


class LinenBatchNormDropout(nn.Module):
    """A linen network with batch norm and dropout, in Flax's usual ``train`` style."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(16)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
        return nn.Dense(1)(x)


def test_linen_batch_norm_and_dropout_train_like_a_hand_written_flax_loop(regression):
    x, y = regression
    x, y = np.asarray(x[:288]), np.asarray(y[:288])  # 9 full batches of 32
    module = LinenBatchNormDropout()
    variables = module.init(jax.random.key(0), x[:2], train=False)
    key, tx = jax.random.key(1), jaxnn._optim.transform("adam")
    r = jaxnn.fit(
        module,
        variables,
        x,
        y,
        loss="mse",
        key=key,
        optimizer=jaxnn.optim.adam(0.01),
        batch_size=32,
        epochs=3,
        shuffle=False,
        progress=False,
    )

    @jax.jit
    def step(
        params, stats, opt_state, i, xb, yb
    ):  # Flax's training loop, with jaxnn's documented step keys
        def loss(p):
            dropout_key = jax.random.fold_in(jaxnn.rng.stream(key, "dropout"), i)
            out, upd = module.apply({"params": p, "batch_stats": stats}, xb, train=True, mutable=["batch_stats"],
                                    rngs={"dropout": dropout_key})  # fmt: skip
            return jnp.mean((out - yb) ** 2), upd["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state

    params, stats = variables["params"], variables["batch_stats"]
    opt_state = jaxnn._optim.set_hyperparams(tx.init(params), {"learning_rate": 0.01})
    for i in range(27):
        b = slice(32 * (i % 9), 32 * (i % 9 + 1))
        params, stats, opt_state = step(params, stats, opt_state, i, x[b], y[b])
    assert_close(r.params, {"params": params, "batch_stats": stats}, rtol=1e-5, atol=1e-6)
    pred = jaxnn.predict(module, r.params, x)  # inference mode: train=False, the running statistics
    assert_close(
        pred,
        module.apply({"params": params, "batch_stats": stats}, x, train=False),
        rtol=1e-5,
        atol=1e-6,
    )


def test_linen_module_with_state_and_no_train_argument_is_refused(regression):
    x, y = regression

    class WithBatchNorm(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.BatchNorm(use_running_average=True)(x))

    variables = WithBatchNorm().init(jax.random.key(0), x[:2])
    with pytest.raises(
        ValueError, match=r"state besides 'params' \(\['batch_stats'\]\).*must take a `train`"
    ):
        jaxnn.fit(
            WithBatchNorm(), variables, x, y, loss="mse", key=jax.random.key(0), progress=False
        )


def test_nnx_mlp_trains_to_90_percent_on_iris_and_is_updated_in_place():
    ds = jaxnn.load_dataset("iris")
    xtr, xte, ytr, yte = jaxnn.train_test_split(jax.random.key(0), ds.x, ds.y, 0.3)
    xtr, xte = jaxnn.standardize(xtr, xte)
    module = NnxMLP([4, 16, 3], nnx.Rngs(0))
    before = jaxnn.evaluate(
        module, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    r = jaxnn.fit(
        module,
        None,
        xtr,
        ytr,
        loss="softmax_cross_entropy",
        key=jax.random.key(1),
        optimizer=jaxnn.optim.adam(0.01),
        batch_size=16,
        epochs=60,
        progress=False,
    )
    after = jaxnn.evaluate(
        module, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    assert after["accuracy"] >= 0.9 and after["loss"] < before["loss"]
    assert_bitwise_equal(nnx.state(module, nnx.Param), r.params)
    assert_bitwise_equal(
        jnp.argmax(module(jnp.asarray(xte)), 1), jnp.argmax(jaxnn.predict(module, None, xte), 1)
    )


class NnxBatchNormDropout(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 64, rngs=rngs)
        self.norm = nnx.BatchNorm(64, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.out = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_nnx_module_with_batch_norm_and_dropout_trains_to_95_percent_on_digits():
    ds = jaxnn.load_dataset("digits")
    xtr, xte, ytr, yte = jaxnn.train_test_split(jax.random.key(0), ds.x / 16, ds.y, 0.25)
    module = NnxBatchNormDropout(nnx.Rngs(0))
    kw = dict(
        loss="softmax_cross_entropy",
        key=jax.random.key(1),
        optimizer=jaxnn.optim.adam(1e-3),
        batch_size=32,
        epochs=15,
        validation=(xte, yte),
        metrics=["accuracy"],
        progress=False,
    )
    r = jaxnn.fit(module, None, xtr, ytr, **kw)
    after = jaxnn.evaluate(
        module, None, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )
    assert after["accuracy"] >= 0.95, after
    np.testing.assert_allclose(
        after["loss"], r.history["val_loss"][-1], rtol=1e-5
    )  # eval mode in both
    assert not np.array_equal(module.norm.mean[...], 0)  # the statistics were written back
    again = jaxnn.fit(NnxBatchNormDropout(nnx.Rngs(0)), None, xtr, ytr, **kw)
    assert_bitwise_equal(again.params, r.params)  # dropout masks from the run key: reproducible
    with pytest.raises(TypeError, match="split it first"):
        jaxnn.make_train_step(NnxMLP([3, 1], nnx.Rngs(0)), "mse", jaxnn._optim.transform("sgd"))


def test_resume_from_a_fit_result_continues_a_run_exactly(regression):
    x, y = regression
    model = jaxnn.mlp([3, 8, 1])
    params = model.init(jax.random.key(0))
    kw = dict(
        loss="mse",
        key=jax.random.key(1),
        optimizer="adam",
        shuffle=False,
        batch_size=32,
        progress=False,
    )
    whole = jaxnn.fit(model, params, x, y, epochs=4, **kw)
    first = jaxnn.fit(model, params, x, y, epochs=2, **kw)
    second = jaxnn.fit(model, params, x, y, epochs=4, resume=first, **kw)
    assert_bitwise_equal(second.params, whole.params)
    assert second.epochs_run == 4 and second.history["epoch"].tolist() == [3, 4]
    restarted = jaxnn.fit(model, first.params, x, y, epochs=2, **kw)  # fresh Adam moments differ
    assert not np.array_equal(restarted.params[0]["w"], whole.params[0]["w"])
    with pytest.raises(
        TypeError, match="resume must be a checkpoint path, a FitResult or a TrainState"
    ):
        jaxnn.fit(model, params, x, y, epochs=1, resume=first.state.opt_state, **kw)
    with pytest.raises(ValueError, match="opt_state does not match this optimizer"):
        jaxnn.fit(model, params, x, y, epochs=3, resume=first, **{**kw, "optimizer": "momentum"})


def test_params_none_is_refused_for_a_jaxnn_model(regression):
    x, y = regression
    with pytest.raises(TypeError, match="params is None"):
        jaxnn.fit(jaxnn.mlp([3, 1]), None, x, y, loss="mse", key=jax.random.key(0))
