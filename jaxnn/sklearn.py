"""scikit-learn estimators trained by jaxnn's compiled loops.

``MLPRegressor`` and ``MLPClassifier`` take scikit-learn's parameters with the same
meaning and pass scikit-learn's estimator checks and its own MLP test module
(``tests/test_sklearn_suite.py`` runs it against these classes), so they work in
``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. ``"sgd"`` and ``"adam"`` train
as jaxnn's ``fit`` (whole epochs in one compiled call; fast even at
``batch_size=1``); ``"lbfgs"`` runs optax's L-BFGS in one compiled loop. As in
scikit-learn, weights start Glorot-uniform from ``random_state`` (the same draws as
scikit-learn's), the stopping rule is "no improvement by ``tol`` over the best so
far for more than ``n_iter_no_change`` epochs", ``n_iter_`` counts the epochs of the
last call, and ``learning_rate`` is ``"constant"``, ``"invscaling"`` or
``"adaptive"``. Needs scikit-learn (``pip install 'jaxnn[examples]'``).

Differences from scikit-learn, all deliberate:

- Training runs in float32 (``compute_dtype`` may ask for bfloat16); ``coefs_`` and
  predictions come back in the input's dtype, float32 or float64. Data beyond
  float32's range is refused before training, where scikit-learn trains into
  non-finite weights and raises then.
- ``batch_size`` larger than the training rows is an error, not clipped.
- A run whose loss goes non-finite stops with the last finite weights and a warning
  (jaxnn's NaN guard) instead of going on with NaN weights; a diverged epoch's
  validation score is NaN.
- Each ``fit`` starts its stopping rule afresh (scikit-learn carries the
  no-improvement count across warm-started fits). ``"adam"``'s epsilon is added
  to the bias-corrected second moment (optax's form).
- ``verbose`` prints scikit-learn's "Iteration N, loss = ..." lines when the
  compiled call returns, not while it runs.
- Sparse ``X`` is densified (the compiled loop gathers dense rows).
- ``loss`` (regressor) also takes jaxnn's ``"mse"``, ``"rmse"``, ``"mae"``,
  ``"huber"``; ``activation`` also takes jaxnn's names (``"gelu"``, ``"elu"``, ...);
  ``compute_dtype`` and ``devices`` are passed to ``jaxnn.fit``; ``"lbfgs"`` computes
  in ``compute_dtype`` too, on one device (more devices are refused).

Example:
  >>> import numpy as np
  >>> from jaxnn.sklearn import MLPClassifier
  >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 25)
  >>> y = np.array(["no", "yes", "yes", "no"] * 25)
  >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, random_state=0).fit(X, y)
  >>> clf.predict([[0.0, 1.0], [1.0, 1.0]]).tolist()
  ['yes', 'no']
"""

import functools
import math
import numbers
import types
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse
import scipy.special
from jax.flatten_util import ravel_pytree

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("jaxnn.sklearn needs scikit-learn>=1.6: pip install scikit-learn") from err

from jaxnn import losses, optim, parallel, precision
from jaxnn._checks import positive_int
from jaxnn.distributed import fetch
from jaxnn.mlp import mlp
from jaxnn.train import fit, predict
from jaxnn.types import EarlyStopping, Stop, TrainState

_ACTIVATIONS = {"logistic": "sigmoid"}  # scikit-learn's name -> jaxnn's


def squared_error(predictions, targets, weights=None):
    """scikit-learn's regression loss: half the mean squared error."""
    return 0.5 * losses.mse(predictions, targets, weights)


def poisson(predictions, targets, weights=None):
    """scikit-learn's Poisson deviance loss on the log of the mean (the network's
    output; the prediction is its exponential), summed over outputs."""
    per = jnp.exp(predictions) - targets * predictions + jax.scipy.special.xlogy(targets, targets) - targets
    return losses.weighted_mean(per.reshape(per.shape[0], -1).sum(axis=1), weights)


def log_loss(predictions, targets, weights=None):
    """scikit-learn's binary and multilabel log loss on logits: summed over outputs."""
    return predictions.shape[-1] * losses.binary_cross_entropy_with_logits(predictions, targets, weights)


_REGRESSION_LOSSES = {
    "squared_error": squared_error,
    "poisson": poisson,
    **{n: losses.LOSSES[n] for n in ("mse", "rmse", "mae", "huber")},
}
_PREDICT_CHUNK = 256
_F32_MAX = float(np.finfo(np.float32).max)
_SCHEDULES = ("constant", "invscaling", "adaptive")


def _number(value, name: str, low: float, high: float = math.inf, *, low_open=False, high_open=False) -> float:
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
def _sgd(nesterov: bool) -> optax.GradientTransformation:
    """scikit-learn's SGDOptimizer: ``v = momentum * v - rate * g``, then the update is
    ``v`` (or ``momentum * v - rate * g`` with Nesterov's momentum)."""

    def init(params):
        zero = lambda dtype: jnp.zeros((), dtype)
        f = zero(jnp.float32)
        return SGDState(jax.tree.map(jnp.zeros_like, params), f, f, f, f, f, zero(jnp.int32), zero(jnp.int32), f)

    def update(grads, state, params):
        grads = jax.tree.map(lambda g, p: g + state.l2 * p if p.ndim >= 2 else g, grads, params)
        rate = state.learning_rate / (state.seen + 1.0) ** state.power_t
        velocity = jax.tree.map(lambda v, g: state.momentum * v - rate * g, state.velocity, grads)
        updates = jax.tree.map(lambda v, g: state.momentum * v - rate * g, velocity, grads) if nesterov else velocity
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


@functools.partial(jax.jit, static_argnames=("apply_fn", "loss_fn"))
def _lbfgs(apply_fn, loss_fn, params, x, y, weights, l2, max_iter, max_fun, tol):
    """Full-batch L-BFGS (optax's, zoom line search) in one compiled loop, stopping as
    scipy's L-BFGS-B does: the largest gradient entry at most ``tol``, a relative
    decrease of the loss at most 2.2e-9, ``max_iter`` iterations or ``max_fun`` loss
    evaluations. The objective is the loss plus ``l2 / 2`` times the squared weights.

    The optimizer sees the parameters as one flat vector, as scipy does: its memory,
    dot products and line search act on one array instead of one per weight and bias,
    a third to a half less to compile (BENCHMARKS.md)."""
    v, unravel = ravel_pytree(params)

    def objective(v):
        p = unravel(v)
        penalty = sum(jnp.sum(jnp.square(w)) for w in jax.tree.leaves(p) if w.ndim >= 2)
        return loss_fn(apply_fn(p, x), y, weights) + 0.5 * l2 * penalty

    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one"))
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
        small = (value - new_value) <= ftol * jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0)
        evals = evals + optax.tree_utils.tree_get(state, "num_linesearch_steps")
        return v, state, it + 1, evals, (gmax <= tol) | small | ~jnp.isfinite(new_value)

    c = (v, opt.init(v), jnp.int32(0), jnp.int32(1), jnp.bool_(False))
    v, state, it, evals, done = jax.lax.while_loop(cond, body, c)
    return unravel(v), LBFGSInfo(optax.tree_utils.tree_get(state, "value"), it, evals, done)


def _glorot(rng, sizes: list[int], logistic: bool) -> list[dict]:
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


def _stopping_count(values, maximize: bool, tol: float, patience: float, reduce: bool, rate: float) -> int:
    """scikit-learn's no-improvement count after ``values``: the rule the compiled loop ran."""
    sign, best, count = (-1.0 if maximize else 1.0), math.inf, 0
    for v in values:
        count = 0 if sign * v < best - tol else count + 1  # NaN never improves
        best = min(best, sign * v) if v == v else best
        if count > patience and reduce and rate > 1e-6:
            rate, count = rate * 0.2, 0
    return count


class _BaseMLP(BaseEstimator):
    _output_kind: str  # "regression" or "classification"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        loss=None,
        compute_dtype="auto",
        devices=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.loss = loss
        self.compute_dtype = compute_dtype
        self.devices = devices

    # -- checks ---------------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool) else sizes
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}") from None
        return [positive_int(s, "each hidden layer size") for s in sizes]

    def _activation(self) -> str:
        allowed = ["identity", "logistic", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus"]
        if not isinstance(self.activation, str) or self.activation not in allowed:
            raise ValueError(f"activation must be one of {allowed}, got {self.activation!r}")
        return _ACTIVATIONS.get(self.activation, self.activation)

    def _check_params(self) -> None:
        """Checks the hyperparameters every solver uses."""
        if self.solver not in ("adam", "sgd", "lbfgs"):
            raise ValueError(f"solver must be 'adam', 'sgd' or 'lbfgs', got {self.solver!r}")
        if self.learning_rate not in _SCHEDULES:
            raise ValueError(f"learning_rate must be one of {list(_SCHEDULES)}, got {self.learning_rate!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.verbose, bool | np.bool_):
            pass
        elif not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise TypeError(f"verbose must be True, False or an int >= 0, got {self.verbose!r}")
        self._hidden_sizes(), self._activation(), self._loss_name()
        positive_int(self.max_iter, "max_iter")
        positive_int(self.max_fun, "max_fun")
        _number(self.tol, "tol", 0)
        _number(self.alpha, "alpha", 0)
        _number(self.momentum, "momentum", 0, 1)
        _number(self.power_t, "power_t", 0)
        precision.resolve_compute_dtype(self.compute_dtype)
        devices = parallel.resolve_devices(self.devices)
        if self.solver == "lbfgs" and self.devices is not None and len(devices) > 1:
            raise ValueError(
                f"solver='lbfgs' trains full-batch on one device, got devices={self.devices!r} ({len(devices)} "
                "devices); pass devices=None or one device, or solver='sgd'/'adam' to split batches over devices"
            )
        n = self.n_iter_no_change
        if not (n == np.inf or (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1)):
            raise ValueError(f"n_iter_no_change must be an int >= 1 or np.inf, got {n!r}")

    def _batch_size(self, n_rows: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_rows)
        batch_size = positive_int(self.batch_size, "batch_size")
        if batch_size > n_rows:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {n_rows} training rows; "
                f"expected 'auto' or an int in [1, {n_rows}]"
            )
        return batch_size

    def _check_x(self, X, reset: bool) -> tuple[np.ndarray, np.dtype]:
        """``X`` as float32 for training, and the dtype results come back in."""
        X = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32), accept_sparse=["csr", "csc"])
        return self._dense32(X)

    @staticmethod
    def _dense32(X) -> tuple[np.ndarray, np.dtype]:
        dtype = X.dtype
        X = X.toarray() if scipy.sparse.issparse(X) else X
        if np.abs(X).max(initial=0.0) > _F32_MAX:
            raise ValueError(f"X has values beyond float32's range (|value| > {_F32_MAX:.3g}); rescale it")
        return np.asarray(X, np.float32), dtype

    # -- training -------------------------------------------------------------------

    def _model(self, n_features: int):
        sizes = [n_features, *self._hidden_sizes(), self.n_outputs_]
        return mlp(sizes, activation=self._activation()), sizes

    def _params(self):
        return [
            {"w": np.asarray(w, np.float32), "b": np.asarray(b, np.float32)}
            for w, b in zip(self.coefs_, self.intercepts_, strict=True)
        ]

    def _fit(self, X, y, sample_weight=None, *, incremental: bool, classes=None):
        """``fit`` (up to ``max_iter`` epochs) or ``partial_fit`` (one epoch, going on
        with the optimizer state). A call that raises leaves the estimator as it was."""
        before = dict(self.__dict__)
        try:
            self._check_params()
            if incremental and self.early_stopping:
                raise ValueError("partial_fit does not support early_stopping=True")
            first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
            X, y, dtype = self._prepare(X, y, first, classes, incremental)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
                if sample_weight[0] > 0 and np.all(sample_weight == sample_weight[0]):
                    sample_weight = None  # equal weights: the unweighted mean, with its bits
                else:
                    sample_weight = sample_weight.astype(np.float32)
            rng = check_random_state(self.random_state)
            model, sizes = self._model(X.shape[1])
            if first:
                params = _glorot(rng, sizes, self.activation == "logistic")
                self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
                self.validation_scores_ = [] if self.early_stopping else None
                self.__dict__.pop("_opt_state", None)
            else:
                if [tuple(np.shape(w)) for w in self.coefs_] != list(zip(sizes[:-1], sizes[1:], strict=False)):
                    raise ValueError(
                        f"hidden_layer_sizes changed since the last fit (layers "
                        f"{[np.shape(w) for w in self.coefs_]}); fit from scratch with warm_start=False"
                    )
                params = self._params()
            self.n_layers_ = len(sizes)
            if self.solver == "lbfgs":
                converged = self._train_lbfgs(model, params, X, y, sample_weight)
            else:
                converged = self._train_sgd(model, params, X, y, sample_weight, rng, incremental)
            self.coefs_ = [np.asarray(w, dtype) for w in self.coefs_]
            self.intercepts_ = [np.asarray(b, dtype) for b in self.intercepts_]
            if not all(np.isfinite(w).all() for w in [*self.coefs_, *self.intercepts_]):
                raise ValueError(
                    "Solver produced non-finite parameter weights. The input data may contain large "
                    "values and need to be preprocessed."
                )
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        if not converged:
            what = "L-BFGS" if self.solver == "lbfgs" else "Stochastic Optimizer"
            warnings.warn(
                f"{what}: Maximum iterations ({self.max_iter}) reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _train_lbfgs(self, model, params, X, y, sample_weight) -> bool:
        total = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        apply_fn = precision.with_compute_dtype(model.apply, self.compute_dtype)
        device = None if self.devices is None else parallel.resolve_devices(self.devices)[0]
        with jax.default_device(device):
            params, info = _lbfgs(
                apply_fn, losses.get_loss(self._loss()), params, X, y, sample_weight, np.float32(self.alpha / total),
                np.int32(self.max_iter), np.int32(self.max_fun), np.float32(self.tol),
            )  # fmt: skip
        self.coefs_ = [np.asarray(p["w"]) for p in params]
        self.intercepts_ = [np.asarray(p["b"]) for p in params]
        self.n_iter_, self.loss_ = int(info.iterations), float(info.loss)
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), self.loss_]
        self.best_loss_ = self.loss_
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        return bool(info.converged)

    def _train_sgd(self, model, params, X, y, sample_weight, rng, incremental: bool) -> bool:
        early = self.early_stopping and not incremental
        kw, w_train = {}, sample_weight
        if early:
            X, y, w_train, kw["validation"] = self._validation_split(X, y, sample_weight, rng)
            metric = "accuracy" if self._output_kind == "classification" else "r2"
            kw["metrics"] = (metric,)
        n, batch_size = X.shape[0], self._batch_size(X.shape[0])
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        patience = self.max_iter + 1 if self.n_iter_no_change == np.inf else self.n_iter_no_change + 1
        if not incremental:
            monitor, mode = (f"val_{kw['metrics'][0]}", "max") if early else ("loss", "min")
            kw["early_stopping"] = EarlyStopping(
                monitor, min(patience, self.max_iter + 1), float(self.tol), mode, restore_best=early, best="any",
                reduce_lr=0.2 if adaptive else None, min_lr=1e-6,
            )  # fmt: skip
        continuing = incremental and hasattr(self, "_opt_state")
        l2 = self.alpha / batch_size
        if self.solver == "adam":
            optimizer = optim.Optimizer("adam", {
                "learning_rate": _number(self.learning_rate_init, "learning_rate_init", 0, low_open=True),
                "b1": _number(self.beta_1, "beta_1", 0, 1, high_open=True),
                "b2": _number(self.beta_2, "beta_2", 0, 1, high_open=True),
                "eps": _number(self.epsilon, "epsilon", 0, low_open=True),
                "l2": l2,
            })  # fmt: skip
            opt_state = self._opt_state if continuing else None
        else:
            optimizer = _sgd(bool(self.nesterovs_momentum))
            opt_state = self._opt_state if continuing else optimizer.init(params)
            rate = opt_state.learning_rate if continuing else _number(
                self.learning_rate_init, "learning_rate_init", 0, low_open=True)  # fmt: skip
            opt_state = opt_state._replace(
                learning_rate=np.float32(rate),
                power_t=np.float32(self.power_t if self.learning_rate == "invscaling" else 0.0),
                momentum=np.float32(_number(self.momentum, "momentum", 0, 1)),
                l2=np.float32(l2),
                seen=np.float32(self.t_),
                step_in_epoch=np.int32(0),
                steps_per_epoch=np.int32(math.ceil(n / batch_size)),
                rows=np.float32(n),
            )
        key = jax.random.key(rng.randint(2**31 - 1))
        epochs = 1 if incremental else self.max_iter
        result = fit(
            model, params, X, y, loss=self._loss(), key=key, optimizer=optimizer, batch_size=batch_size,
            epochs=epochs, shuffle=bool(self.shuffle), sample_weight=w_train, progress=False,
            compute_dtype=self.compute_dtype, devices=self.devices,
            resume=None if opt_state is None else TrainState(params, opt_state, 0, 0, key), **kw,
        )  # fmt: skip
        self._store(result, n, early, adaptive, patience)
        return incremental or result.stop_reason != Stop.COMPLETED

    def _validation_split(self, X, y, sample_weight, rng):
        fraction = _number(self.validation_fraction, "validation_fraction", 0, 1, low_open=True, high_open=True)
        stratify = None  # by class, as scikit-learn does (its binary labels are booleans); not multilabel
        if self._output_kind == "classification" and not self._multilabel:
            stratify = y.astype(bool) if y.ndim == 2 else y
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        parts = train_test_split(*arrays, test_size=fraction, random_state=rng, stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        validation = (parts[1], parts[3]) if sample_weight is None else (parts[1], parts[3], parts[5])
        return parts[0], parts[2], None if sample_weight is None else parts[4], validation

    def _store(self, result, n_rows: int, early: bool, adaptive: bool, patience: float) -> None:
        self.coefs_ = [np.asarray(p["w"]) for p in result.params]
        self.intercepts_ = [np.asarray(p["b"]) for p in result.params]
        self._opt_state = fetch(result.state.opt_state)  # numpy: the estimator pickles
        losses_now = [float(v) for v in result.history["loss"]]
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), *losses_now]
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = result.epochs_run
        self.t_ = getattr(self, "t_", 0) + n_rows * result.epochs_run
        rate = float(optim.learning_rate_of(self._opt_state))  # adaptive: reduced in the loop
        if self.solver == "adam" or self.learning_rate == "constant":
            rate = float(self.learning_rate_init)
        elif self.learning_rate == "invscaling":
            rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
        self._optimizer = types.SimpleNamespace(learning_rate=rate)  # scikit-learn's rate after the last epoch
        tol, start = float(self.tol), float(self.learning_rate_init)
        if early:
            metric = next(k for k in result.history if k.startswith("val_") and k != "val_loss")
            scores = [float(v) if np.isfinite(v) else math.nan for v in result.history[metric]]
            self.validation_scores_ = [*(self.validation_scores_ or []), *scores]
            self.best_validation_score_ = max((v for v in self.validation_scores_ if v == v), default=-math.inf)
            self.best_loss_ = None
            self._no_improvement_count = _stopping_count(scores, True, tol, patience - 1, adaptive, start)
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)
            self._no_improvement_count = _stopping_count(losses_now, False, tol, patience - 1, adaptive, start)
        if self.verbose:
            for i, loss in enumerate(losses_now, 1):
                print(f"Iteration {i}, loss = {loss:.8f}")
                if early:
                    print(f"Validation score: {scores[i - 1]:f}")

    def _forward(self, X) -> tuple[np.ndarray, np.dtype]:
        check_is_fitted(self, "coefs_")
        X, dtype = self._check_x(X, reset=False)
        # Every row goes through the same compiled chunk shape, so a row's prediction
        # does not depend on how many rows come with it.
        n = X.shape[0]
        X = np.concatenate([X, np.zeros((-n % _PREDICT_CHUNK, X.shape[1]), X.dtype)])
        out = predict(self._model(X.shape[1])[0], self._params(), X, batch_size=_PREDICT_CHUNK)
        return np.asarray(out)[:n].astype(np.float64), dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags

    def _not_lbfgs(self):
        return self.solver != "lbfgs"


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor (scikit-learn API) trained by jaxnn.

    Parameters are scikit-learn's ``MLPRegressor``'s (see the module docstring for
    the differences): ``loss`` is ``"squared_error"`` (default; half the mean squared
    error, so ``learning_rate_init`` means the same step), ``"poisson"`` (an
    exponential output) or a jaxnn regression loss; plus ``compute_dtype`` and
    ``devices``. Fitted attributes: ``coefs_``, ``intercepts_``, ``loss_``,
    ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``, ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, ``n_features_in_``.
    """

    _output_kind = "regression"

    def _loss_name(self) -> str:
        loss = "squared_error" if self.loss is None else self.loss
        if not isinstance(loss, str) or loss not in _REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {list(_REGRESSION_LOSSES)}, got {loss!r}")
        return loss

    def _loss(self):
        return _REGRESSION_LOSSES[self._loss_name()]

    def _prepare(self, X, y, reset: bool, classes=None, incremental=False):
        del classes, incremental  # a classifier's
        X, y = validate_data(
            self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True,
            accept_sparse=["csr", "csc"],
        )  # fmt: skip
        X, dtype = self._dense32(X)
        y2 = np.asarray(y, np.float64).reshape(len(y), -1)
        if self._loss_name() == "poisson" and (y2 < 0).any():
            raise ValueError("loss='poisson' needs targets >= 0 (counts), got negative values in y")
        if reset:
            self.n_outputs_ = y2.shape[1]
            self.out_activation_ = "exp" if self._loss_name() == "poisson" else "identity"
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, the fitted model {self.n_outputs_}")
        if np.abs(y2).max(initial=0.0) > _F32_MAX:
            raise ValueError(f"y has values beyond float32's range (|value| > {_F32_MAX:.3g}); rescale it")
        return X, y2.astype(np.float32), dtype

    def fit(self, X, y, sample_weight=None):
        """Trains on ``X`` (n, features) and ``y`` (n,) or (n, outputs), each row
        weighted by ``sample_weight`` (n,) when given; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._not_lbfgs)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, going on with the weights and optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions in X's dtype: shape (n,) for one output, else (n, outputs)."""
        out, dtype = self._forward(X)
        out = np.exp(out) if self.out_activation_ == "exp" else out
        return (out[:, 0] if self.n_outputs_ == 1 else out).astype(dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier (scikit-learn API) trained by jaxnn.

    Binary problems (and a single class) get one logistic output, multilabel
    indicator targets one logistic output per label (scikit-learn's log loss, summed
    over labels), multiclass problems a softmax; labels may be strings, integers or
    booleans. ``loss`` is ``"log_loss"`` (the only choice; kept for the shared
    signature). Fitted attributes: those of :class:`MLPRegressor` and ``classes_``.
    """

    _output_kind = "classification"

    def _loss_name(self) -> str:
        if self.loss not in (None, "log_loss"):
            raise ValueError(f"loss must be 'log_loss' for a classifier, got {self.loss!r}")
        return "log_loss"

    def _loss(self):
        return "softmax_cross_entropy" if self.out_activation_ == "softmax" else log_loss

    def _prepare(self, X, y, reset: bool, classes=None, incremental=False):
        X, y = validate_data(
            self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True, accept_sparse=["csr", "csc"]
        )
        X, dtype = self._dense32(X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # scikit-learn's DataConversionWarning
        check_classification_targets(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        labels = np.arange(y.shape[1]) if multilabel else np.unique(y)
        if incremental and classes is not None:
            classes = np.unique(np.asarray(classes))
            if hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"`classes={classes.tolist()}` is not the same as on the last call to partial_fit, "
                    f"was: {self.classes_.tolist()}"
                )
        elif incremental and not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit (every label y will have)")
        if not hasattr(self, "classes_") or (reset and not incremental):
            self.classes_ = labels if classes is None else classes
            self._multilabel = multilabel
            n_out = len(self.classes_) if multilabel or len(self.classes_) > 2 else 1
            self.n_outputs_ = n_out
            self.out_activation_ = "softmax" if n_out > 1 and not multilabel else "logistic"
        elif not incremental and not np.array_equal(labels, self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                f"Previously got {self.classes_}, `y` has {labels}"
            )
        if multilabel != self._multilabel:
            raise ValueError("y switched between multilabel indicators and class labels since the last fit")
        if multilabel:
            return X, np.asarray(y, np.float32), dtype
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels {unknown.tolist()} not in classes_ {self.classes_.tolist()}")
        index = np.searchsorted(self.classes_, y).astype(np.int32)
        targets = index if self.out_activation_ == "softmax" else index[:, None].astype(np.float32)
        return X, targets, dtype

    def fit(self, X, y, sample_weight=None):
        """Trains on ``X`` (n, features) and class labels ``y`` (n,) (or multilabel
        indicators (n, labels)), each row weighted by ``sample_weight``; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._not_lbfgs)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``, going on with the weights and optimizer state.
        The first call needs ``classes``: every label the data will ever have."""
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, float64, shape (n, n_classes): rows sum to 1, except
        for multilabel targets (one independent probability per label)."""
        logits, _ = self._forward(X)
        if self.out_activation_ == "softmax":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        p = scipy.special.expit(logits)
        return p if self._multilabel else np.hstack([1.0 - p, p])

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row, shape (n,); for multilabel targets
        the indicator matrix (probability above 0.5)."""
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba > 0.5).astype(int)
        if len(self.classes_) == 1:
            return np.repeat(self.classes_, len(proba))
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


__all__ = ["MLPClassifier", "MLPRegressor"]
