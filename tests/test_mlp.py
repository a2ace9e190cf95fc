import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import GRAD_TOL, assert_close
from jax.test_util import check_grads

import jaxnn


def test_seed_network_shapes(key):
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(key)
    assert [(p["w"].shape, p["b"].shape) for p in params] == [((3, 4), (4,)), ((4, 4), (4,)), ((4, 1), (1,))]
    assert jaxnn.count_params(params) == 16 + 20 + 5
    y = model.apply(params, jnp.ones((100, 3)))
    assert y.shape == (100, 1)
    assert ((y > 0) & (y < 1)).all()  # the sigmoid output
    assert model.spec == {"kind": "mlp", "sizes": [3, 4, 4, 1], "activation": "relu", "output_activation": "sigmoid"}


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
    a1 = jax.nn.relu(x @ p[0]["w"] + p[0]["b"][None, :])  # the bias row added to every row of the batch
    a2 = jax.nn.relu(a1 @ p[1]["w"] + p[1]["b"][None, :])
    assert_close(model.apply(p, x), jax.nn.sigmoid(a2 @ p[2]["w"] + p[2]["b"][None, :]))


def test_gradients_match_finite_differences(key):
    model = jaxnn.mlp([3, 6, 2], activation="tanh")
    params = jax.tree.map(lambda a: a.astype(jnp.float32), model.init(key))
    x = jax.random.normal(key, (5, 3))
    check_grads(lambda p: model.apply(p, x).sum(), (params,), order=1, modes=["rev"], atol=GRAD_TOL, rtol=GRAD_TOL)


def test_init_is_deterministic_and_key_dependent():
    model = jaxnn.mlp([3, 4, 1])
    a, b = model.init(jax.random.key(1)), model.init(jax.random.key(1))
    chex_equal = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert chex_equal
    assert not np.array_equal(a[0]["w"], model.init(jax.random.key(2))[0]["w"])


def test_equal_networks_have_equal_apply():
    # Two identical networks share one compiled program (apply compares by value).
    assert jaxnn.mlp([3, 4, 1]).apply == jaxnn.mlp([3, 4, 1]).apply
    assert jaxnn.mlp([3, 4, 1]).apply != jaxnn.mlp([3, 4, 1], output_activation="sigmoid").apply


def test_custom_initializers_and_callable_activation(key):
    model = jaxnn.mlp([2, 3, 1], activation=jnp.sin, init="zeros", bias_init=jaxnn.initializers.normal(1.0))
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


test_bad_input_gets_a_clear_error = bad_input_test("mlp", "apply")
