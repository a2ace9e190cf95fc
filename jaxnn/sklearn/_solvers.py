"""The solvers behind jaxnn's scikit-learn estimators (private): scikit-learn's losses
and stepping rules where they differ from jaxnn's, its SGD with momentum and learning-rate
schedules as an optax transformation, full-batch L-BFGS in one compiled loop, its
Glorot initialisation and its no-improvement count. The estimators are in
``jaxnn.sklearn._estimators``.
"""

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxnn import _programs, losses, metrics

ACTIVATIONS = {"logistic": "sigmoid"}  # scikit-learn's name -> jaxnn's


def squared_error(predictions, targets, weights=None):
    """scikit-learn's regression loss: half the mean squared error."""
    return 0.5 * losses.mse(predictions, targets, weights)


def poisson(predictions, targets, weights=None):
    """scikit-learn's Poisson deviance loss on the log of the mean (the network's
    output; the prediction is its exponential), summed over outputs."""
    per = (
        jnp.exp(predictions)
        - targets * predictions
        + jax.scipy.special.xlogy(targets, targets)
        - targets
    )
    return losses.weighted_mean(per.reshape(per.shape[0], -1).sum(axis=1), weights)


def logit_accuracy(predictions, targets, weights=None):
    """Accuracy of logits: one logistic output is class 1 above logit 0 (probability 0.5)."""
    return metrics.accuracy(predictions, targets, weights, threshold=0.0)


logit_accuracy.higher_is_better = True


def log_loss(predictions, targets, weights=None):
    """scikit-learn's binary and multilabel log loss on logits: summed over outputs."""
    return predictions.shape[-1] * losses.binary_cross_entropy_with_logits(
        predictions, targets, weights
    )


REGRESSION_LOSSES = {
    "squared_error": squared_error,
    "poisson": poisson,
    **{n: losses.LOSSES[n] for n in ("mse", "rmse", "mae", "huber")},
}
PREDICT_CHUNK = 256
F32_MAX = float(np.finfo(np.float32).max)
SCHEDULES = ("constant", "invscaling", "adaptive")


def number(
    value, name: str, low: float, high: float = math.inf, *, low_open=False, high_open=False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    ok = (
        math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


class SGDState(NamedTuple):
    """scikit-learn's SGD with momentum, every number data: one compiled loop serves
    all settings. The rate of a step is ``learning_rate / (seen + 1) ** power_t``
    (``power_t`` 0: constant), ``seen`` being the rows seen before its epoch."""

    velocity: Any
    learning_rate: jax.Array
    power_t: jax.Array
    momentum: jax.Array
    l2: jax.Array  # alpha / batch rows: adds l2 * w to the gradient of every weight matrix
    seen: jax.Array
    step_in_epoch: jax.Array
    steps_per_epoch: jax.Array
    rows: jax.Array


@functools.cache
def sgd_transform(nesterov: bool) -> optax.GradientTransformation:
    """scikit-learn's SGDOptimizer: ``v = momentum * v - rate * g``, then the update is
    ``v`` (or ``momentum * v - rate * g`` with Nesterov's momentum)."""

    def init(params):
        zero = lambda dtype: jnp.zeros((), dtype)
        f = zero(jnp.float32)
        return SGDState(
            jax.tree.map(jnp.zeros_like, params), f, f, f, f, f, zero(jnp.int32), zero(jnp.int32), f
        )

    def update(grads, state, params):
        grads = jax.tree.map(lambda g, p: g + state.l2 * p if p.ndim >= 2 else g, grads, params)
        rate = state.learning_rate / (state.seen + 1.0) ** state.power_t
        velocity = jax.tree.map(lambda v, g: state.momentum * v - rate * g, state.velocity, grads)
        updates = (
            jax.tree.map(lambda v, g: state.momentum * v - rate * g, velocity, grads)
            if nesterov
            else velocity
        )
        step = state.step_in_epoch + 1
        ends = step >= state.steps_per_epoch
        return updates, state._replace(
            velocity=velocity,
            seen=jnp.where(ends, state.seen + state.rows, state.seen),
            step_in_epoch=jnp.where(ends, 0, step),
        )

    return optax.GradientTransformation(init, update)


class LBFGSInfo(NamedTuple):
    loss: jax.Array
    iterations: jax.Array
    evaluations: jax.Array
    converged: jax.Array


def _lbfgs(apply_fn, loss_fn, params, x, y, weights, l2, max_iter, max_fun, tol):
    """Full-batch L-BFGS (optax's, zoom line search) in one compiled loop, stopping as
    scipy's L-BFGS-B does: the largest gradient entry at most ``tol``, a relative
    decrease of the loss at most 2.2e-9, ``max_iter`` iterations or ``max_fun`` loss
    evaluations. The objective is the loss plus ``l2 / 2`` times the squared weights.

    The optimizer sees the parameters as one flat vector, as scipy does: its memory,
    dot products and line search act on one array instead of one per weight and bias,
    a third to a half less to compile (CHANGELOG.md, 0.1.0)."""
    v, unravel = ravel_pytree(params)

    def objective(v):
        p = unravel(v)
        penalty = sum(jnp.sum(jnp.square(w)) for w in jax.tree.leaves(p) if w.ndim >= 2)
        return loss_fn(apply_fn(p, x), y, weights) + 0.5 * l2 * penalty

    opt = optax.lbfgs(
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=20, initial_guess_strategy="one"
        )
    )
    value_and_grad = optax.value_and_grad_from_state(objective)
    ftol = 1e7 * float(np.finfo(np.float64).eps)  # scipy's default factr, as scikit-learn runs it

    def cond(c):
        _, _, it, evals, done = c
        return (it < max_iter) & (evals < max_fun) & ~done

    def body(c):
        v, state, it, evals, _ = c
        value, grad = value_and_grad(v, state=state)
        updates, state = opt.update(grad, state, v, value=value, grad=grad, value_fn=objective)
        v = optax.apply_updates(v, updates)
        new_value = optax.tree_utils.tree_get(state, "value")
        gmax = jnp.max(jnp.abs(optax.tree_utils.tree_get(state, "grad")))
        small = (value - new_value) <= ftol * jnp.maximum(
            jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0
        )
        evals = evals + optax.tree_utils.tree_get(state, "num_linesearch_steps")
        return v, state, it + 1, evals, (gmax <= tol) | small | ~jnp.isfinite(new_value)

    c = (v, opt.init(v), jnp.int32(0), jnp.int32(1), jnp.bool_(False))
    v, state, it, evals, done = jax.lax.while_loop(cond, body, c)
    return unravel(v), LBFGSInfo(optax.tree_utils.tree_get(state, "value"), it, evals, done)


def glorot(rng, sizes: list[int], logistic: bool) -> list[dict]:
    """scikit-learn's initial weights and biases: uniform in +-sqrt(f / (fan_in +
    fan_out)), f = 2 for logistic activations and 6 otherwise, drawn from ``rng`` in
    scikit-learn's order."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=False):
        bound = np.sqrt((2.0 if logistic else 6.0) / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, (fan_in, fan_out))
        b = rng.uniform(-bound, bound, fan_out)
        params.append({"w": w.astype(np.float32), "b": b.astype(np.float32)})
    return params


def stopping_count(
    values, maximize: bool, tol: float, patience: float, reduce: bool, rate: float
) -> int:
    """scikit-learn's no-improvement count after ``values``: the rule the compiled loop ran."""
    sign, best, count = (-1.0 if maximize else 1.0), math.inf, 0
    for v in values:
        count = 0 if sign * v < best - tol else count + 1  # NaN never improves
        best = min(best, sign * v) if v == v else best
        if count > patience and reduce and rate > 1e-6:
            rate, count = rate * 0.2, 0
    return count


lbfgs = _programs.jit("sklearn.lbfgs", _lbfgs, (0, 1))
