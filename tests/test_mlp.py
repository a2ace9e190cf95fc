import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import GRAD_TOL, assert_bitwise_equal, assert_close
from jax.test_util import check_grads

import jaxnn


def test_seed_network_shapes(key):
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(key)
    assert [(p["w"].shape, p["b"].shape) for p in params] == [
        ((3, 4), (4,)),
        ((4, 4), (4,)),
        ((4, 1), (1,)),
    ]
    assert jaxnn.count_params(params) == 16 + 20 + 5
    y = model.apply(params, jnp.ones((100, 3)))
    assert y.shape == (100, 1)
    assert ((y > 0) & (y < 1)).all()  # the sigmoid output
    assert model.spec == {
        "kind": "mlp",
        "sizes": [3, 4, 4, 1],
        "activation": "relu",
        "output_activation": "sigmoid",
    }


def test_single_example_and_batch_agree(key):
    model = jaxnn.mlp([3, 5, 2])
    params = model.init(key)
    x = jax.random.normal(key, (7, 3))
    batch = model.apply(params, x)
    assert model.apply(params, x[0]).shape == (2,)
    assert_close(jnp.stack([model.apply(params, r) for r in x]), batch)
    assert_close(jax.vmap(model.apply, in_axes=(None, 0))(params, x), batch)
    assert_close(jax.jit(model.apply)(params, x), batch)


def test_forward_is_the_seeds_matrix_products(key):
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    p = model.init(key)
    x = jax.random.normal(key, (100, 3))
    a1 = jax.nn.relu(
        x @ p[0]["w"] + p[0]["b"][None, :]
    )  # the bias row added to every row of the batch
    a2 = jax.nn.relu(a1 @ p[1]["w"] + p[1]["b"][None, :])
    assert_close(model.apply(p, x), jax.nn.sigmoid(a2 @ p[2]["w"] + p[2]["b"][None, :]))


def test_gradients_match_finite_differences(key):
    model = jaxnn.mlp([3, 6, 2], activation="tanh")
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.init(key))
    x = jax.random.normal(key, (5, 3))
    check_grads(
        lambda p: model.apply(p, x).sum(),
        (params,),
        order=1,
        modes=["rev"],
        atol=GRAD_TOL,
        rtol=GRAD_TOL,
    )


def test_init_is_deterministic_and_key_dependent():
    model = jaxnn.mlp([3, 4, 1])
    a, b = model.init(jax.random.key(1)), model.init(jax.random.key(1))
    chex_equal = all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert chex_equal
    assert not np.array_equal(a[0]["w"], model.init(jax.random.key(2))[0]["w"])


def test_equal_networks_have_equal_apply():
    # Two identical networks share one compiled program (apply compares by value).
    assert jaxnn.mlp([3, 4, 1]).apply == jaxnn.mlp([3, 4, 1]).apply
    assert jaxnn.mlp([3, 4, 1]).apply != jaxnn.mlp([3, 4, 1], output_activation="sigmoid").apply


def test_custom_initializers_and_callable_activation(key):
    model = jaxnn.mlp(
        [2, 3, 1], activation=jnp.sin, init="zeros", bias_init=jaxnn.initializers.normal(1.0)
    )
    p = model.init(key)
    assert not np.asarray(p[0]["w"]).any() and np.asarray(p[0]["b"]).any()
    assert model.spec["activation"] == "sin"


@pytest.mark.parametrize(
    ("sizes", "err", "match"),
    [
        ([3], ValueError, "at least an input and an output"),
        ([3, 0, 1], ValueError, r"sizes\[1\] must be >= 1"),
        ([3, 2.5, 1], TypeError, r"sizes\[1\] must be an int"),
        ("341", TypeError, "sequence of ints"),
        (5, TypeError, "sequence of ints"),
    ],
)
def test_bad_sizes(sizes, err, match):
    with pytest.raises(err, match=match):
        jaxnn.mlp(sizes)


def test_bad_input_features(key):
    model = jaxnn.mlp([3, 4, 1])
    params = model.init(key)
    with pytest.raises(ValueError, match="x has 5 features but the first layer expects 3"):
        model.apply(params, jnp.ones((10, 5)))
    with pytest.raises(ValueError, match="must have shape"):
        model.apply(params, jnp.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="list of 2 layers"):
        model.apply(params[:1], jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="unknown activation"):
        jaxnn.mlp([3, 1], activation="sigmoidd")


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import MODEL, PARAMS, bad_dtypes, bad_input_test, case, expect, huge_ints, of_dtype  # noqa: E402

# jaxnn.mlp ----------------------------------------------------------------------------


@case("mlp", "rank")
def _(data, tmp):
    for sizes in (3, "3,4,1", None):
        expect(TypeError, "sizes must be a sequence of ints", jaxnn.mlp, sizes)


@case("mlp", "length")
def _(data, tmp):
    for sizes in ([3], [], (4,)):
        expect(ValueError, "at least an input and an output size", jaxnn.mlp, sizes)


@case("mlp", "dtype")
def _(data, tmp):
    for bad in (4.5, "4", None, np.float32(2.0)):
        expect(TypeError, r"sizes\[1\] must be an int", jaxnn.mlp, [3, bad, 1])


@case("mlp", "overflow")
def _(data, tmp):
    expect(
        ValueError, "weights; at most 2147483647 per layer", jaxnn.mlp, [3, data.draw(huge_ints), 1]
    )


@case("mlp", "name")
def _(data, tmp):
    name = data.draw(
        st.text(min_size=1, max_size=8).filter(lambda s: s not in jaxnn.activations.ACTIVATIONS)
    )
    expect(ValueError, "unknown activation .*; expected one of", jaxnn.mlp, [3, 1], activation=name)


# Model.apply --------------------------------------------------------------------------


@case("apply", "rank")
def _(data, tmp):
    for shape in ((), (2, 2, 3), (1, 1, 1, 3)):
        expect(
            ValueError,
            r"x must have shape \(batch, 3\) or \(3,\)",
            MODEL.apply,
            PARAMS,
            np.ones(shape),
        )


@case("apply", "length")
def _(data, tmp):
    features = data.draw(st.integers(1, 9).filter(lambda f: f != 3))
    expect(
        ValueError,
        "features but the first layer expects 3",
        MODEL.apply,
        PARAMS,
        np.ones((2, features)),
    )


@case("apply", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "x must be a numeric",
        MODEL.apply,
        PARAMS,
        of_dtype(data.draw(bad_dtypes), (2, 3)),
    )


test_bad_input_gets_a_clear_error = bad_input_test("mlp", "apply")


# dropout and normalisation ------------------------------------------------------------


def test_dropout_masks_are_reproducible_and_differ_per_step_and_per_row():
    model = jaxnn.mlp([3, 64, 1], activation="identity", dropout=0.5)
    params = model.init(jax.random.key(0))
    x = jnp.ones((8, 3))  # identical rows: any difference between rows is the mask's
    hidden = lambda key: model.apply.layers(params, x, key)[0][1]
    a, again, other = (
        hidden(jax.random.key(1)),
        hidden(jax.random.key(1)),
        hidden(jax.random.key(2)),
    )
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, other)
    assert (
        len({tuple(np.asarray(row != 0)) for row in a}) == 8
    )  # rows (so devices) get their own masks
    kept = np.asarray(a != 0).mean()
    assert 0.35 < kept < 0.65
    np.testing.assert_array_equal(
        a[a != 0], 2 * model.apply.layers(params, x)[0][1][a != 0]
    )  # scaled by 1/(1-p)
    assert_bitwise_equal(model.apply(params, x), model.apply(params, x))  # inference: no dropout


def test_batch_norm_trains_on_batch_statistics_and_predicts_with_running_ones():
    model = jaxnn.mlp([3, 4, 1], norm="batch")
    variables = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (256, 3)) * 3 + 5
    y, updates = model.apply.train_apply(variables, x, jax.random.key(2))
    z = x @ variables["params"][0]["w"] + variables["params"][0]["b"].reshape(1, -1)
    np.testing.assert_allclose(updates["batch_stats"][0]["mean"], 0.1 * z.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        updates["batch_stats"][0]["var"], 0.9 + 0.1 * z.var(axis=0), rtol=1e-5
    )
    normalised = model.apply.layers(
        variables, x, batch_stats=True
    )  # each hidden unit: mean 0, var 1
    assert_close(
        model.apply.train_apply(variables, x, jax.random.key(3))[0], y
    )  # no dropout: key-free
    h = (z - z.mean(axis=0, keepdims=True)) / jnp.sqrt(z.var(axis=0, keepdims=True) + 1e-5)
    assert_close(normalised[0][1], jax.nn.relu(h), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch-norm MLP takes its variables from model.init"):
        model.apply(variables["params"], x)


def test_layer_norm_normalises_each_row():
    model = jaxnn.mlp([3, 6, 1], norm="layer", activation="identity")
    params = model.init(jax.random.key(0))
    a = model.apply.layers(params, jax.random.normal(jax.random.key(1), (5, 3)) * 10)[0][1]
    assert_close(a.mean(axis=1), jnp.zeros(5), atol=1e-5)
    assert_close(a.std(axis=1), jnp.ones(5), atol=1e-3)
    assert not hasattr(model.apply, "train_apply")  # no state, no randomness: one mode


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"dropout": 1.0}, r"in \[0, 1\)"), ({"dropout": -0.1}, r"in \[0, 1\)"), ({"dropout": [0.1]}, "one per hidden"),
     ({"dropout": "0.5"}, "one per hidden"), ({"norm": "group"}, "norm must be None or one of")],
)  # fmt: skip
def test_bad_dropout_and_norm_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        jaxnn.mlp([3, 4, 4, 1], **kw)


@pytest.mark.slow  # end to end; CI runs it
def test_dropout_and_batch_norm_fit_exactly_whatever_the_chunking_and_resume(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=100)
    model = jaxnn.mlp([3, 16, 16, 1], norm="batch", dropout=[0.3, 0.1], output_activation="sigmoid")
    x, y, xv, yv = x[:80], y[:80], x[80:], y[80:]
    kw = dict(
        loss="mse",
        key=jax.random.key(2),
        batch_size=16,
        validation=(xv, yv),
        progress=False,
        optimizer="adam",
    )
    whole = jaxnn.fit(model, model.init(jax.random.key(1)), x, y, epochs=6, **kw)
    chunked = jaxnn.fit(
        model, model.init(jax.random.key(1)), x, y, epochs=6, tuning=jaxnn.Tuning(1), **kw
    )
    assert_bitwise_equal(chunked.params, whole.params)
    ck = jaxnn.Checkpoints(tmp_path, every=1)
    jaxnn.fit(model, model.init(jax.random.key(1)), x, y, epochs=3, checkpoints=ck, **kw)
    resumed = jaxnn.fit(model, model.init(jax.random.key(1)), x, y, epochs=6, resume=tmp_path, **kw)
    assert_bitwise_equal(resumed.params, whole.params)
    assert set(whole.params) == {"params", "batch_stats"}
    assert not np.array_equal(
        whole.params["batch_stats"][0]["mean"], 0
    )  # the running statistics moved
    ev = jaxnn.evaluate(model, whole.params, xv, yv, loss="mse")
    np.testing.assert_allclose(
        ev["loss"], whole.history["val_loss"][-1], rtol=1e-6
    )  # inference mode, both


def test_explain_shows_norm_and_dropout_and_backprop_says_plain_only():
    model = jaxnn.mlp([3, 4, 1], norm="batch", dropout=0.5)
    variables = model.init(jax.random.key(0))
    text = str(jaxnn.explain(model, variables, jnp.ones((10, 3))))
    assert "A1 = relu(batchnorm(Z1)) -> (10, 4)   then dropout 0.5 (training only)" in text
    with pytest.raises(ValueError, match="plain network only"):
        jaxnn.backprop(model, variables, jnp.ones((10, 3)), jnp.ones((10, 1)))
