import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close

import jaxnn
from jaxnn.activations import ACTIVATIONS

BACKPROP_TOL = {"rtol": 2e-4, "atol": 2e-6}  # float32, two different summation orders


def test_explain_walks_the_seeds_forward_pass(key):
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(key)
    x = jax.random.normal(key, (100, 3))
    ex = jaxnn.explain(model, params, x)
    text = str(ex)
    assert "X (100, 3)" in text
    assert "Z1 = X · W1 (3, 4) + b1 (4,) -> (100, 4)" in text
    assert "A1 = relu(Z1) -> (100, 4)" in text
    assert "A3 = sigmoid(Z3) -> (100, 1)" in text
    assert "total parameters: 41" in text
    assert_close(ex.output, model.apply(params, x))
    assert [layer.z.shape for layer in ex.layers] == [(100, 4), (100, 4), (100, 1)]


def test_explain_rejects_non_mlp_and_single_examples(key):
    model = jaxnn.mlp([3, 2])
    with pytest.raises(TypeError, match="jaxnn.mlp"):
        jaxnn.explain(jaxnn.Model(model.init, lambda p, x: x), model.init(key), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="batch"):
        jaxnn.explain(model, model.init(key), jnp.ones(3))


CASES = [  # (loss, output activation, targets)
    ("mse", "sigmoid", "regression"),
    ("rmse", "identity", "regression"),
    ("mae", "tanh", "regression"),
    ("binary_cross_entropy", "sigmoid", "binary"),
    ("binary_cross_entropy_with_logits", "identity", "binary"),
    ("softmax_cross_entropy", "identity", "labels"),
    ("softmax_cross_entropy", "identity", "onehot"),
    ("mse", "softmax", "onehot"),
    ("mse", "log_softmax", "onehot"),
]


@pytest.mark.parametrize(
    "hidden", sorted(set(ACTIVATIONS) - {"softmax", "log_softmax"}) + ["softmax"]
)
@pytest.mark.parametrize(
    ("loss", "out_act", "kind"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES]
)
def test_backprop_equals_jax_grad_on_random_networks(hidden, loss, out_act, kind):
    seed = zlib.crc32(f"{hidden}-{loss}-{out_act}-{kind}".encode())
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 5))
    sizes = [int(rng.integers(1, 7)) for _ in range(depth)]
    n_out = 3 if kind in ("labels", "onehot") else int(rng.integers(1, 4))
    model = jaxnn.mlp(
        [int(rng.integers(1, 6)), *sizes, n_out], activation=hidden, output_activation=out_act
    )
    # Random weights (scaled by fan-in) and biases, and data, drawn on the host: the case's
    # random shapes would otherwise compile model.init's initializers op by op.
    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
    scale = lambda shape: 1 / np.sqrt(shape[0]) if len(shape) == 2 else 0.3
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda s: f32(rng.standard_normal(s.shape) * scale(s.shape)), shapes)
    n = int(rng.integers(1, 20))
    x = f32(rng.standard_normal((n, model.spec["sizes"][0])))
    labels = rng.integers(0, n_out, n)
    y = {
        "regression": f32(rng.uniform(0.1, 0.9, (n, n_out))),
        "binary": f32(rng.integers(0, 2, (n, n_out))),
        "labels": jnp.asarray(labels.astype(np.int32)),
        "onehot": f32(np.eye(n_out)[labels]),
    }[kind]

    @jax.jit  # both gradients in one compile
    def gradients(params):
        by_jax = jax.grad(lambda p: jaxnn.losses.get_loss(loss)(model.apply(p, x), y))(params)
        return jaxnn.backprop(model, params, x, y, loss), by_jax

    by_hand, by_jax = gradients(params)
    assert_close(by_hand, by_jax, **BACKPROP_TOL)


def test_backprop_rejects_unsupported_loss(key):
    model = jaxnn.mlp([2, 1])
    with pytest.raises(ValueError, match="backprop supports"):
        jaxnn.backprop(model, model.init(key), jnp.ones((2, 2)), jnp.ones((2, 1)), "huber")
    with pytest.raises(ValueError, match="same shape"):
        jaxnn.backprop(model, model.init(key), jnp.ones((2, 2)), jnp.ones(2), "mse")
