import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import GRAD_TOL, assert_close, examples
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

import jaxnn
from jaxnn import losses
from jaxnn import losses as L

REGRESSION = ["mse", "rmse", "mae", "huber"]
preds = hnp.arrays(
    np.float32, st.tuples(st.integers(1, 6), st.integers(1, 3)), elements=st.floats(-5, 5, width=32)
)


@pytest.mark.parametrize("name", REGRESSION)
@settings(max_examples=examples(15))
@given(p=preds)
def test_regression_losses_nonnegative_and_zero_at_perfect(name, p):
    loss = L.get_loss(name)
    t = np.asarray(p) + 1.0
    assert float(loss(jnp.asarray(p), jnp.asarray(t))) >= 0
    assert float(loss(jnp.asarray(p), jnp.asarray(p))) == 0.0


@settings(max_examples=examples(15))
@given(p=preds, labels=st.integers(0, 1))
def test_cross_entropies_nonnegative(p, labels):
    t = np.full(p.shape, labels, np.float32)
    assert float(L.binary_cross_entropy_with_logits(jnp.asarray(p), jnp.asarray(t))) >= 0
    assert float(L.binary_cross_entropy(jax.nn.sigmoid(jnp.asarray(p)), jnp.asarray(t))) >= 0
    assert float(L.softmax_cross_entropy(jnp.asarray(p), jnp.zeros(p.shape[0], jnp.int32))) >= 0


def test_known_values():
    p = jnp.array([[1.0], [3.0]])
    t = jnp.array([[1.0], [1.0]])
    assert float(L.mse(p, t)) == 2.0
    assert float(L.rmse(p, t)) == pytest.approx(np.sqrt(2.0))
    assert float(L.mae(p, t)) == 1.0
    assert float(L.huber(p, t)) == pytest.approx((0 + 1.5) / 2)


def test_rmse_gradient_is_finite_at_zero_error():
    p = jnp.ones((4, 1))
    g = jax.grad(lambda q: L.rmse(q, p))(p)
    assert np.isfinite(np.asarray(g)).all()
    assert not np.asarray(g).any()


@pytest.mark.parametrize("name", REGRESSION + ["binary_cross_entropy_with_logits"])
def test_gradients_match_finite_differences(name, key):
    p = jax.random.uniform(key, (6, 2), minval=0.1, maxval=0.9)
    t = jnp.round(jax.random.uniform(jax.random.key(1), (6, 2)))
    check_grads(
        lambda q: L.get_loss(name)(q, t), (p,), order=1, modes=["rev"], atol=GRAD_TOL, rtol=GRAD_TOL
    )


def test_softmax_and_bce_gradients_match_finite_differences(key):
    logits = jax.random.normal(key, (5, 3))
    check_grads(
        lambda q: L.softmax_cross_entropy(q, jnp.array([0, 1, 2, 1, 0])),
        (logits,),
        order=1,
        modes=["rev"],
        atol=GRAD_TOL,
        rtol=GRAD_TOL,
    )
    probs = jax.random.uniform(key, (5, 1), minval=0.2, maxval=0.8)
    check_grads(
        lambda q: L.binary_cross_entropy(q, jnp.ones((5, 1))),
        (probs,),
        order=1,
        modes=["rev"],
        atol=GRAD_TOL,
        rtol=GRAD_TOL,
    )


def test_cross_entropies_stable_for_huge_logits():
    logits = jnp.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    for value, grad in [
        jax.value_and_grad(L.softmax_cross_entropy)(logits, jnp.array([1, 0])),
        jax.value_and_grad(L.softmax_cross_entropy)(logits, jnp.array([[0.0, 1.0], [1.0, 0.0]])),
        jax.value_and_grad(L.binary_cross_entropy_with_logits)(
            logits, jnp.array([[0.0, 1.0], [1.0, 0.0]])
        ),
        jax.value_and_grad(L.binary_cross_entropy)(
            jax.nn.sigmoid(logits), jnp.array([[0.0, 1.0], [1.0, 0.0]])
        ),
    ]:
        assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    assert float(L.softmax_cross_entropy(logits, jnp.array([1, 0]))) == pytest.approx(2000.0)
    assert (
        float(L.binary_cross_entropy_with_logits(logits, jnp.array([[1.0, 0.0], [0.0, 1.0]])))
        == 0.0
    )


def test_one_hot_and_integer_labels_agree(key):
    logits = jax.random.normal(key, (8, 4))
    labels = jnp.array([0, 1, 2, 3, 3, 2, 1, 0])
    assert_close(
        L.softmax_cross_entropy(logits, labels),
        L.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 4)),
    )


def test_weights_mask_examples():
    p = jnp.array([[1.0], [2.0], [100.0]])
    t = jnp.zeros((3, 1))
    assert float(L.mse(p, t, jnp.array([1.0, 1.0, 0.0]))) == pytest.approx(2.5)
    assert float(L.mse(p[:2], t[:2])) == pytest.approx(2.5)
    assert float(L.mse(p, t, jnp.zeros(3))) == 0.0  # an empty batch is 0, not NaN
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        L.mse(p, t, jnp.ones(2))


@pytest.mark.parametrize(
    "name", REGRESSION + ["binary_cross_entropy", "binary_cross_entropy_with_logits"]
)
def test_shape_mismatch_raises_instead_of_broadcasting(name):
    with pytest.raises(ValueError, match=r"same shape.*y\[:, None\]"):
        L.get_loss(name)(jnp.zeros((5, 1)), jnp.zeros(5))


def test_label_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        L.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 3]))
    with pytest.raises(ValueError, match="integer labels must have shape"):
        L.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        L.binary_cross_entropy(jnp.full((2, 1), 0.5), jnp.array([[0.0], [2.0]]))


def test_lookup():
    assert L.get_loss("rmse") is L.rmse
    assert L.get_loss(L.mae) is L.mae
    with pytest.raises(ValueError, match="unknown loss 'rsme'.*'rmse'"):
        L.get_loss("rsme")
    with pytest.raises(TypeError):
        L.get_loss(None)


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import bad_dtypes, bad_input_test, bad_labels, case, expect, of_dtype, poisoned  # noqa: E402

# losses -------------------------------------------------------------------------------

loss_names = st.sampled_from(sorted(losses.LOSSES))


@case("losses", "rank")
def _(data, tmp):
    name = data.draw(loss_names.filter(lambda n: n != "softmax_cross_entropy"))
    expect(
        ValueError,
        r"must have the same shape \(reshape targets",
        losses.get_loss(name),
        np.ones((5, 1)),
        np.ones(5),
    )


@case("losses", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 9).filter(lambda n: n != 5))
    expect(
        ValueError,
        "must have the same shape|labels must have shape",
        losses.get_loss(data.draw(loss_names)),
        np.full((5, 2), 0.5),
        np.full((n, 2), 0.5),
    )


@case("losses", "empty")
def _(data, tmp):
    expect(
        ValueError,
        r"the batch is empty \(0 examples\); expected at least one",
        losses.get_loss(data.draw(loss_names)),
        np.ones((0, 2)),
        np.ones((0, 2)),
    )


@case("losses", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "targets must be a numeric",
        losses.get_loss(data.draw(loss_names)),
        np.full((3, 2), 0.5),
        of_dtype(data.draw(bad_dtypes), (3, 2)),
    )


@case("losses", "labels")
def _(data, tmp):
    labels = bad_labels(data, 2)
    expect(
        ValueError,
        r"labels must lie in \[0, 2\)|must have the same shape",
        losses.softmax_cross_entropy,
        np.zeros((10, 2)),
        labels,
    )
    targets = poisoned(
        data, np.zeros((10, 1)), data.draw(st.one_of(st.floats(1.01, 1e6), st.floats(-1e6, -0.01)))
    )
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        expect(
            ValueError,
            r"targets must lie in \[0, 1\]",
            losses.get_loss(name),
            np.full((10, 1), 0.5),
            targets,
        )


@case("losses", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=12).filter(lambda s: s not in losses.LOSSES))
    expect(ValueError, "unknown loss .*; expected one of", losses.get_loss, name)


test_bad_input_gets_a_clear_error = bad_input_test("losses")


def test_a_loss_carries_the_targets_it_takes_and_fit_checks_y_by_it():
    """fit reads a loss's ``targets``, not its name: a loss of the user's that says
    "classes" gets its labels checked before anything trains, as the built-in one does."""
    assert (
        L.softmax_cross_entropy.targets == "classes" and L.binary_cross_entropy.targets == "binary"
    )
    assert not hasattr(L.mse, "targets")

    def my_cross_entropy(p, t, w=None):
        return L.softmax_cross_entropy(p, t, w)

    model, key = jaxnn.mlp([4, 8, 3]), jax.random.key(0)
    x, labels = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 3])
    fit = lambda loss: jaxnn.fit(model, model.init(key), x, labels, loss=loss, key=key, epochs=1, batch_size=2,
                                 progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"y has shape \(6,\) but the model outputs \(n, 3\)"):
        fit(my_cross_entropy)  # without targets: any values, so labels (n,) do not fit (n, 3)
    my_cross_entropy.targets = "classes"
    with pytest.raises(ValueError, match=r"y: labels must lie in \[0, 3\)"):
        fit(my_cross_entropy)
    labels[-1] = 2
    assert np.isfinite(fit(my_cross_entropy).history["loss"]).all()
