import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import initializers as I


@pytest.mark.parametrize("name", sorted(I.INITIALIZERS))
def test_shape_dtype_and_determinism(name, key):
    init = I.get_initializer(name)
    a = init(key, (64, 32), jnp.float32)
    assert a.shape == (64, 32) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, init(key, (64, 32), jnp.float32))


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("he_normal", np.sqrt(2 / 400)),
        ("glorot_normal", np.sqrt(2 / 600)),
        ("lecun_normal", np.sqrt(1 / 400)),
        ("he_uniform", np.sqrt(2 / 400)),
        ("glorot_uniform", np.sqrt(2 / 600)),
    ],
)
def test_variance_scaling(name, std, key):
    w = np.asarray(I.get_initializer(name)(key, (400, 200)))
    assert abs(w.std() / std - 1) < 0.05
    assert abs(w.mean()) < 0.01


def test_normal_and_zeros(key):
    assert abs(float(I.normal(0.5)(key, (200, 200)).std()) - 0.5) < 0.02
    assert not np.asarray(I.zeros(key, (3, 4))).any()
    with pytest.raises(ValueError, match="stddev"):
        I.normal(0.0)


def test_different_keys_differ():
    a = I.he_normal(jax.random.key(1), (4, 4))
    b = I.he_normal(jax.random.key(2), (4, 4))
    assert not np.allclose(a, b)


def test_defaults_per_activation():
    assert I.default_initializer("relu") is I.he_normal
    assert I.default_initializer("gelu") is I.he_normal
    assert I.default_initializer("sigmoid") is I.glorot_normal
    assert I.default_initializer("tanh") is I.glorot_normal


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown initializer 'he'.*he_normal"):
        I.get_initializer("he")
    with pytest.raises(TypeError):
        I.get_initializer(1.0)
