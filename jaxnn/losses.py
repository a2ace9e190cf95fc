"""Loss functions: how wrong a batch of predictions is, as one scalar to minimise.

Every loss has the signature ``loss(predictions, targets, weights=None) -> scalar``.
The first axis is the batch axis; ``weights`` (shape ``(batch,)``) weights or masks
examples, which is how a padded last batch is kept out of the loss. The result is the
weighted mean over examples of each example's loss (averaged over its outputs).
Shapes must match exactly: nothing is broadcast, because ``(n,)`` against ``(n, 1)``
would silently give an ``(n, n)`` loss. A loss says which targets it takes in its
``targets`` attribute (``"classes"``: integer labels or one-hot rows; ``"binary"``:
values in [0, 1]; none: any values), and ``fit`` checks ``y`` by it before training;
set it on a loss of your own. This module does not train (see ``jaxnn.train``).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._checks import check_batch, check_same_shape, check_weights, is_concrete

Loss = Callable[..., jax.Array]


def weighted_mean(per_example: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean of a per-example array of shape ``(batch, ...)``, weighted along axis 0.

    Trailing axes are averaged per example first. With all weights zero the result
    is 0 (an empty batch), not NaN.
    """
    per_example = jnp.asarray(per_example)
    if per_example.ndim > 1:
        per_example = per_example.reshape(per_example.shape[0], -1).mean(axis=1)
    if weights is None:
        return per_example.mean()
    weights = check_weights(weights, per_example.shape[0]).astype(per_example.dtype)
    total = weights.sum()
    return jnp.where(total > 0, (per_example * weights).sum() / jnp.where(total > 0, total, 1), 0.0)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    # sqrt'(0) is infinite; at zero error the gradient of RMSE is taken as 0 instead,
    # so a perfect fit (or a fully masked batch) never produces NaN gradients.
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _batched(x):
    return x[None] if jnp.ndim(x) == 0 else x


def mse(predictions, targets, weights=None):
    """Mean squared error: mean of ``(predictions - targets) ** 2``.

    Example:
      >>> float(mse(jnp.array([[1.0], [3.0]]), jnp.array([[1.0], [1.0]])))
      2.0
    """
    check_same_shape(predictions, targets, "mse")
    return weighted_mean(_batched(jnp.square(predictions - targets)), weights)


def rmse(predictions, targets, weights=None):
    """Root mean squared error (the seed's "MRSE"): ``sqrt(mse)``, in target units.

    Its gradient at zero error is 0, not NaN.
    """
    return _safe_sqrt(mse(predictions, targets, weights))


def mae(predictions, targets, weights=None):
    """Mean absolute error: mean of ``|predictions - targets|``."""
    check_same_shape(predictions, targets, "mae")
    return weighted_mean(_batched(jnp.abs(predictions - targets)), weights)


def huber(predictions, targets, weights=None, delta: float = 1.0):
    """Huber loss: quadratic for errors below ``delta``, linear above (robust to outliers)."""
    check_same_shape(predictions, targets, "huber")
    return weighted_mean(_batched(optax.huber_loss(predictions, targets, delta=delta)), weights)


def _check_probability_targets(targets, name: str) -> None:
    # values are checkable outside a trace
    t = np.asarray(targets) if is_concrete(targets) else None
    if t is not None and t.size and not ((t >= 0) & (t <= 1)).all():
        raise ValueError(f"{name}: targets must lie in [0, 1] (labels 0/1 or probabilities)")


def binary_cross_entropy(predictions, targets, weights=None):
    """Binary cross-entropy from probabilities (e.g. a sigmoid output) in (0, 1).

    Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` so a saturated output gives a
    large finite loss rather than inf. Prefer :func:`binary_cross_entropy_with_logits`
    when the model outputs logits: it is exact for any logit.
    """
    check_same_shape(predictions, targets, "binary_cross_entropy")
    _check_probability_targets(targets, "binary_cross_entropy")
    eps = 1e-7
    p = jnp.clip(predictions, eps, 1 - eps)
    per = -(targets * jnp.log(p) + (1 - targets) * jnp.log1p(-p))
    return weighted_mean(_batched(per), weights)


def binary_cross_entropy_with_logits(predictions, targets, weights=None):
    """Binary cross-entropy from logits (the output before a sigmoid); stable for any logit."""
    check_same_shape(predictions, targets, "binary_cross_entropy_with_logits")
    _check_probability_targets(targets, "binary_cross_entropy_with_logits")
    per = optax.sigmoid_binary_cross_entropy(predictions, targets.astype(predictions.dtype))
    return weighted_mean(_batched(per), weights)


def softmax_cross_entropy(predictions, targets, weights=None):
    """Softmax cross-entropy from logits of shape ``(batch, classes)``.

    ``targets`` are integer labels of shape ``(batch,)`` in ``[0, classes)``, or
    one-hot / probability rows of shape ``(batch, classes)``. Stable for any logit.

    Example:
      >>> logits = jnp.array([[1000.0, -1000.0]])
      >>> float(softmax_cross_entropy(logits, jnp.array([1])))
      2000.0
    """
    if jnp.ndim(predictions) < 1:
        raise ValueError("softmax_cross_entropy: predictions must have a class axis")
    check_batch(predictions, targets, "softmax_cross_entropy")
    if jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        if jnp.shape(targets) != jnp.shape(predictions)[:-1]:
            raise ValueError(
                f"softmax_cross_entropy: integer labels must have shape "
                f"{jnp.shape(predictions)[:-1]} for logits {jnp.shape(predictions)}, "
                f"got {jnp.shape(targets)}"
            )
        k = jnp.shape(predictions)[-1]
        t = np.asarray(targets) if is_concrete(targets) else None
        if t is not None and t.size and not ((t >= 0) & (t < k)).all():
            raise ValueError(f"softmax_cross_entropy: labels must lie in [0, {k}) for {k} classes")
        per = optax.softmax_cross_entropy_with_integer_labels(predictions, targets)
    else:
        check_same_shape(predictions, targets, "softmax_cross_entropy")
        per = optax.softmax_cross_entropy(predictions, targets)
    return weighted_mean(_batched(per), weights)


LOSSES: dict[str, Loss] = {
    f.__name__: f
    for f in (
        mse,
        rmse,
        mae,
        huber,
        binary_cross_entropy,
        binary_cross_entropy_with_logits,
        softmax_cross_entropy,
    )
}


# The targets a loss takes, which fit checks before training: "classes" (integer labels
# in [0, outputs), or one-hot or probability rows) or "binary" (values in [0, 1]); a
# loss without the attribute takes any values. A loss of the user's may say so too.
softmax_cross_entropy.targets = "classes"
binary_cross_entropy.targets = binary_cross_entropy_with_logits.targets = "binary"


def get_loss(loss: str | Loss) -> Loss:
    """Looks up a loss by name (see ``LOSSES``), or passes a callable through."""
    if isinstance(loss, str):
        try:
            return LOSSES[loss]
        except KeyError:
            raise ValueError(
                f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or a callable"
            ) from None
    if callable(loss):
        return loss
    raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")
