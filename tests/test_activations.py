import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxnn import activations as A

floats = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=8),
    elements=st.floats(-50, 50, width=32, allow_subnormal=False),
)


@given(floats)
def test_sigmoid_maps_into_open_unit_interval(x):
    # The seed says (-1, 1); it is (0, 1). Saturation in float32 may reach the ends.
    y = np.asarray(A.sigmoid(jnp.asarray(x)))
    assert ((y >= 0) & (y <= 1)).all()
    small = np.abs(x) < 10
    assert ((y[small] > 0) & (y[small] < 1)).all()


@given(floats)
def test_tanh_maps_into_minus_one_one(x):
    y = np.asarray(A.tanh(jnp.asarray(x)))
    assert ((y >= -1) & (y <= 1)).all()


@given(floats)
def test_softmax_rows_sum_to_one(x):
    y = np.asarray(A.softmax(jnp.asarray(x)))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        np.exp(np.asarray(A.log_softmax(jnp.asarray(x)))).sum(-1), 1.0, rtol=1e-5
    )


@given(floats)
def test_relu_is_max_with_zero(x):
    np.testing.assert_array_equal(np.asarray(A.relu(jnp.asarray(x))), np.maximum(x, 0))


@pytest.mark.parametrize("name", sorted(A.ACTIVATIONS))
def test_lookup_by_name_and_shape_preserved(name):
    f = A.get_activation(name)
    assert f is A.ACTIVATIONS[name]
    assert f(jnp.ones((5, 3))).shape == (5, 3)
    assert A.activation_name(f) == name


def test_callable_and_none_pass_through():
    assert A.get_activation(jnp.sin) is jnp.sin
    assert A.get_activation(None) is A.identity


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'rellu'.*'relu'"):
        A.get_activation("rellu")
    with pytest.raises(TypeError):
        A.get_activation(3)


def test_known_values():
    x = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(A.leaky_relu(x), [-0.02, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(A.elu(x), [np.exp(-2) - 1, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(A.softplus(jnp.array([0.0])), [np.log(2)], rtol=1e-6)
    assert float(A.sigmoid(jnp.array(0.0))) == 0.5
    assert float(A.gelu(jnp.array(0.0))) == 0.0
    assert A.identity(x) is x
