"""Metrics: numbers for people to read about a model's predictions (not to minimise).

Every metric has the signature ``metric(predictions, targets, weights=None) -> scalar``
with the batch on axis 0 and optional per-example ``weights`` (padding masks), like
the losses. Training uses ``jaxnn.losses``; this module only reports.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _checks, losses
from jaxnn.losses import weighted_mean

Metric = Callable[..., jax.Array]


def predicted_classes(predictions: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Class indices from model outputs: argmax over classes, or ``> threshold`` for
    one output column (or a 1-D array), as for a sigmoid output."""
    if jnp.ndim(predictions) == 1 or jnp.shape(predictions)[-1] == 1:
        p = predictions.reshape(predictions.shape[0]) if jnp.ndim(predictions) > 1 else predictions
        return (p > threshold).astype(jnp.int32)
    return jnp.argmax(predictions, axis=-1)


def accuracy(predictions, targets, weights=None, *, threshold: float = 0.5):
    """Fraction of examples whose predicted class equals the target class.

    Binary (one output column, or 1-D): class 1 when ``prediction > threshold``
    (0.5 for probabilities; pass ``threshold=0.0`` for logits). Multiclass: argmax.
    ``targets`` are class labels of shape ``(batch,)`` or ``(batch, 1)``, or one-hot
    rows of shape ``(batch, classes)``.

    Example:
      >>> float(accuracy(jnp.array([[0.9], [0.2]]), jnp.array([1, 1])))
      0.5
    """
    _checks.check_batch(predictions, targets, "accuracy")
    binary = jnp.ndim(predictions) == 1 or jnp.shape(predictions)[-1] == 1
    k = 2 if binary else jnp.shape(predictions)[-1]
    one_hot = jnp.ndim(targets) == 2 and jnp.shape(targets)[-1] > 1
    if jnp.ndim(targets) not in (1, 2) or jnp.shape(targets)[:1] != jnp.shape(predictions)[:1]:
        raise ValueError(
            f"accuracy: targets {jnp.shape(targets)} do not match predictions "
            f"{jnp.shape(predictions)}; expected labels of shape {jnp.shape(predictions)[:1]}"
        )
    # values are checkable outside a trace, before any work
    if not one_hot and _checks.is_concrete(targets):
        v = np.asarray(targets).reshape(-1)
        if v.size and not ((v >= 0) & (v < k) & (v == np.round(v))).all():
            raise ValueError(
                f"accuracy: targets must be class labels, whole numbers in [0, {k}); got {v[:10]}"
            )
    pred = predicted_classes(predictions, threshold)
    t = jnp.asarray(targets)
    t = jnp.argmax(t, axis=-1) if one_hot else t.reshape(t.shape[0])
    return weighted_mean((pred == t.astype(pred.dtype)).astype(jnp.float32), weights)


rmse = losses.rmse
mae = losses.mae


def r2(predictions, targets, weights=None):
    """Coefficient of determination: ``1 - SS_res / SS_tot`` (1 is perfect, 0 is as
    good as predicting the mean). Averaged over output columns. A constant target
    column scores 1 if predicted exactly and 0 otherwise (scikit-learn's
    ``force_finite``); predictions whose squared errors overflow score NaN."""
    _checks.check_same_shape(predictions, targets, "r2")
    p = _columns(predictions)
    t = _columns(targets)
    w = (
        jnp.ones(t.shape[0], t.dtype)
        if weights is None
        else _checks.check_weights(weights, t.shape[0])
    )
    w = w.astype(t.dtype)[:, None]
    mean = (w * t).sum(0, keepdims=True) / jnp.maximum(w.sum(), 1e-12)
    ss_res = (w * jnp.square(t - p)).sum(0)
    ss_tot = (w * jnp.square(t - mean)).sum(0)
    score = jnp.where(
        ss_tot > 0,
        1.0 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1.0),
        jnp.where(ss_res == 0, 1.0, 0.0),
    )
    return jnp.mean(jnp.where(jnp.isfinite(ss_res), score, jnp.nan))


def _columns(a):
    a = jnp.asarray(a)
    return a.reshape(a.shape[0], -1) if a.ndim != 1 else a[:, None]


# A metric says which way is better: fit_many's table and the search rank by it. A
# callable of the user's may say so too (fn.higher_is_better = True).
accuracy.higher_is_better = r2.higher_is_better = True

METRICS: dict[str, Metric] = {"accuracy": accuracy, "rmse": rmse, "mae": mae, "r2": r2}


def get_metric(metric: str | Metric) -> tuple[str, Metric]:
    """Looks up a metric by name; returns ``(name, fn)``. A callable is named by its
    ``__name__``; set ``fn.higher_is_better = True`` on one that ranks higher as
    better (a loss-like one needs nothing)."""
    if isinstance(metric, str):
        try:
            return metric, METRICS[metric]
        except KeyError:
            raise ValueError(
                f"unknown metric {metric!r}; expected one of {sorted(METRICS)} or a callable"
            ) from None
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    raise TypeError(f"metric must be a name or a callable, got {type(metric).__name__}")


def higher_is_better(monitor: str, metrics=()) -> bool:
    """Whether a recorded value ranks higher as better or lower (losses): what its
    metric says (``fn.higher_is_better``; accuracy and r2 say so), looked up among
    ``metrics`` (names, callables or ``(name, fn)`` pairs) and then the built-in ones."""
    name = monitor.removeprefix("val_")
    found = [
        fn for n, fn in (m if isinstance(m, tuple) else get_metric(m) for m in metrics) if n == name
    ]
    return bool(getattr(found[0] if found else METRICS.get(name), "higher_is_better", False))
