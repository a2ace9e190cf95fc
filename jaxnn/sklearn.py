"""scikit-learn estimators trained by jaxnn's compiled ``fit``.

``MLPRegressor`` and ``MLPClassifier`` take the parameters of scikit-learn's own MLP
estimators where the meaning is the same, and pass scikit-learn's estimator checks,
so they work in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. Training runs
as jaxnn's ``fit`` (whole epochs in one compiled call; fast even at ``batch_size=1``)
on the default JAX device. Needs scikit-learn (``pip install 'jaxnn[examples]'``).

Differences from scikit-learn, all deliberate:

- ``solver`` is ``"adam"`` or ``"sgd"``; there is no ``"lbfgs"``, and the learning
  rate is constant (no ``learning_rate``/``power_t`` schedule).
- ``loss`` (regressor): ``"squared_error"`` (scikit-learn's: half the mean squared
  error, so ``learning_rate_init`` means the same step) or any jaxnn regression loss
  (``"mse"``, ``"rmse"``, ``"mae"``, ``"huber"``); ``loss_curve_`` is that loss per
  epoch, without the ``alpha`` term.
- ``batch_size`` larger than the training rows is an error, not clipped.
- ``activation`` also takes jaxnn's names (``"gelu"``, ``"elu"``, ...).
- ``compute_dtype`` (``"auto"``, ``"float32"``, ``"bfloat16"``) and ``devices`` are
  passed to ``jaxnn.fit``. Data is trained in float32; predictions come back float64.

Example:
  >>> import numpy as np
  >>> from jaxnn.sklearn import MLPClassifier
  >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 25)
  >>> y = np.array(["no", "yes", "yes", "no"] * 25)
  >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, random_state=0).fit(X, y)
  >>> clf.predict([[0.0, 1.0], [1.0, 1.0]]).tolist()
  ['yes', 'no']
"""

import math
import numbers
import warnings

import jax
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("jaxnn.sklearn needs scikit-learn>=1.6: pip install scikit-learn") from err

from jaxnn import losses, optim
from jaxnn._checks import positive_int
from jaxnn.mlp import mlp
from jaxnn.train import fit, predict
from jaxnn.types import EarlyStopping, Stop, TrainState

_ACTIVATIONS = {"logistic": "sigmoid"}  # scikit-learn's name -> jaxnn's


def squared_error(predictions, targets, weights=None):
    """scikit-learn's regression loss: half the mean squared error."""
    return 0.5 * losses.mse(predictions, targets, weights)


_REGRESSION_LOSSES = {"squared_error": squared_error, **{n: losses.LOSSES[n] for n in ("mse", "rmse", "mae", "huber")}}
_PREDICT_CHUNK = 256
_F32_MAX = float(np.finfo(np.float32).max)


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


def _optimizer(solver, lr, momentum, nesterov, beta_1, beta_2, epsilon, l2) -> optim.Optimizer:
    """jaxnn's named optimizer for scikit-learn's settings; every value is data in its
    state, so estimators that differ only in numbers share one compiled loop. ``l2``
    is scikit-learn's ``alpha`` term: ``alpha / batch_size`` times the weights."""
    if solver == "adam":
        return optim.Optimizer("adam", {"learning_rate": lr, "b1": beta_1, "b2": beta_2, "eps": epsilon, "l2": l2})
    if momentum == 0:
        return optim.Optimizer("sgd", {"learning_rate": lr, "l2": l2})
    return optim.Optimizer(
        "nesterov" if nesterov else "momentum", {"learning_rate": lr, "momentum": momentum, "l2": l2}
    )


def _float32(a: np.ndarray, name: str) -> np.ndarray:
    if np.abs(a).max(initial=0.0) > _F32_MAX:
        raise ValueError(f"{name} has values beyond float32's range (|value| > {_F32_MAX:.3g}); rescale it")
    return np.asarray(a, np.float32)


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
        learning_rate_init=0.001,
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
        loss=None,
        compute_dtype="auto",
        devices=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
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

    def _settings(self, n_rows: int) -> dict:
        """Checks every hyperparameter; returns what ``fit`` needs."""
        if self.solver not in ("adam", "sgd"):
            raise ValueError(
                f"solver must be 'adam' or 'sgd', got {self.solver!r} (jaxnn trains with mini-batch "
                "gradient steps; 'lbfgs' is not supported)"
            )
        if self.batch_size == "auto":
            batch_size = min(200, n_rows)
        else:
            batch_size = positive_int(self.batch_size, "batch_size")
            if batch_size > n_rows:
                raise ValueError(
                    f"batch_size={batch_size} is larger than the {n_rows} training rows; "
                    f"expected 'auto' or an int in [1, {n_rows}]"
                )
        for name in ("shuffle", "verbose", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        tx = _optimizer(
            self.solver,
            _number(self.learning_rate_init, "learning_rate_init", 0, low_open=True),
            _number(self.momentum, "momentum", 0, 1),
            bool(self.nesterovs_momentum),
            _number(self.beta_1, "beta_1", 0, 1, high_open=True),
            _number(self.beta_2, "beta_2", 0, 1, high_open=True),
            _number(self.epsilon, "epsilon", 0, low_open=True),
            _number(self.alpha, "alpha", 0) / batch_size,
        )
        return {
            "optimizer": tx,
            "batch_size": batch_size,
            "shuffle": bool(self.shuffle),
            "progress": bool(self.verbose),
            "compute_dtype": self.compute_dtype,
            "devices": self.devices,
        }

    def _check_x(self, X, reset: bool):
        return _float32(validate_data(self, X, reset=reset, dtype=(np.float64, np.float32)), "X")

    # -- training -------------------------------------------------------------------

    def _model(self, n_features: int):
        sizes = [n_features, *self._hidden_sizes(), self.n_outputs_]
        return mlp(sizes, activation=self._activation()), list(zip(sizes[:-1], sizes[1:], strict=False))

    def _params(self):
        return [{"w": w, "b": b} for w, b in zip(self.coefs_, self.intercepts_, strict=True)]

    def _fit(self, X, y, *, incremental: bool, classes=None):
        """``fit`` (``max_iter`` epochs) or ``partial_fit`` (one epoch, continuing the
        optimizer state). A call that raises leaves the estimator as it was."""
        before = dict(self.__dict__)
        try:
            fitted = hasattr(self, "coefs_")
            reset = not fitted if incremental else not (self.warm_start and fitted)
            X, y = self._prepare(X, y, reset, classes)
            epochs = 1 if incremental else positive_int(self.max_iter, "max_iter")
            converged = self._train(X, y, epochs=epochs, incremental=incremental)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        if not converged:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({epochs}) reached and the optimization "
                "hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _train(self, X, y, *, epochs: int, incremental: bool) -> bool:
        """Trains on float32 ``X`` and prepared targets ``y``; returns False when a
        full fit ran ``max_iter`` epochs without meeting its stopping rule."""
        model, shapes = self._model(X.shape[1])
        rng = check_random_state(self.random_state)
        patience = positive_int(self.n_iter_no_change, "n_iter_no_change")
        tol = _number(self.tol, "tol", 0)
        loss = self._loss()
        kw = {}
        early = self.early_stopping is True and not incremental
        if early:
            kw["validation"], X, y = self._validation_split(X, y, rng)
            metric = "accuracy" if self._output_kind == "classification" else "r2"
            kw["metrics"] = (metric,)
            kw["early_stopping"] = EarlyStopping(f"val_{metric}", patience, tol, "max", restore_best=True)
        elif not incremental:
            kw["early_stopping"] = EarlyStopping("loss", patience, tol, "min", restore_best=False)
        settings = self._settings(X.shape[0])
        continuing = hasattr(self, "coefs_") and (incremental or self.warm_start)
        if continuing:
            if [w.shape for w in self.coefs_] != shapes:
                raise ValueError(
                    f"hidden_layer_sizes changed since the last fit (layers {[w.shape for w in self.coefs_]}, "
                    f"now {shapes}); fit from scratch with warm_start=False"
                )
            params = self._params()
        else:
            params = model.init(jax.random.key(rng.randint(2**31 - 1)))
        key = jax.random.key(rng.randint(2**31 - 1))
        if continuing and incremental:  # partial_fit goes on with the optimizer state (Adam's moments)
            kw["resume"] = TrainState(params, self._opt_state, 0, 0, key)
        result = fit(model, params, X, y, loss=loss, key=key, epochs=epochs, **settings, **kw)
        self._store(result, X.shape[0], early, continuing)
        return incremental or result.stop_reason != Stop.COMPLETED or result.epochs_run < epochs

    def _validation_split(self, X, y, rng):
        fraction = _number(self.validation_fraction, "validation_fraction", 0, 1, low_open=True, high_open=True)
        stratify = np.ravel(y) if self._output_kind == "classification" else None
        try:
            X, X_val, y, y_val = train_test_split(X, y, test_size=fraction, random_state=rng, stratify=stratify)
        except ValueError as err:
            raise ValueError(f"early_stopping: cannot hold out validation_fraction={fraction}: {err}") from None
        return (X_val, y_val), X, y

    def _store(self, result, n_rows: int, early: bool, continuing: bool) -> None:
        if not continuing:
            self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
        self.coefs_ = [np.asarray(p["w"]) for p in result.params]
        self.intercepts_ = [np.asarray(p["b"]) for p in result.params]
        self._opt_state = jax.device_get(result.state.opt_state)  # numpy: the estimator pickles
        self.loss_curve_ = [*self.loss_curve_, *map(float, result.history["loss"])]
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ += result.epochs_run
        self.t_ += n_rows * result.epochs_run
        self.n_layers_ = len(self.coefs_) + 1
        if early:
            metric = next(k for k in result.history if k.startswith("val_") and k != "val_loss")
            self.validation_scores_ = [float(v) for v in result.history[metric]]
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        X = self._check_x(X, reset=False)
        # Every row goes through the same compiled chunk shape, so a row's prediction
        # does not depend on how many rows come with it.
        n = X.shape[0]
        X = np.pad(X, ((0, -n % _PREDICT_CHUNK), (0, 0)))
        out = predict(self._model(X.shape[1])[0], self._params(), X, batch_size=_PREDICT_CHUNK)
        return np.asarray(out[:n], np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor (scikit-learn API) trained by ``jaxnn.fit``.

    Parameters are scikit-learn's ``MLPRegressor``'s (see the module docstring for
    the differences), plus ``loss`` (default ``"squared_error"``), ``compute_dtype`` and
    ``devices``. Fitted attributes: ``coefs_``, ``intercepts_``, ``loss_``,
    ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``best_validation_score_``, ``n_iter_``, ``t_``, ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, ``n_features_in_``.
    """

    _output_kind = "regression"

    def _loss(self):
        loss = "squared_error" if self.loss is None else self.loss
        if not isinstance(loss, str) or loss not in _REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {list(_REGRESSION_LOSSES)}, got {loss!r}")
        return _REGRESSION_LOSSES[loss]

    def _prepare(self, X, y, reset: bool, classes=None):
        del classes  # a classifier's
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True)
        y = np.asarray(y, np.float64)
        y2 = y.reshape(len(y), -1)
        if reset:
            self.n_outputs_, self.out_activation_ = y2.shape[1], "identity"
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, the fitted model {self.n_outputs_}")
        return _float32(X, "X"), _float32(y2, "y")

    def fit(self, X, y):
        """Trains on ``X`` (n, features) and ``y`` (n,) or (n, outputs); returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing the weights and optimizer state."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predictions, float64: shape (n,) for one output, else (n, outputs)."""
        out = self._forward(X)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier (scikit-learn API) trained by ``jaxnn.fit``.

    Binary problems get one logistic output (``binary_cross_entropy_with_logits``),
    multiclass problems a softmax (``softmax_cross_entropy``); labels may be strings,
    integers or booleans. ``loss`` is ``"log_loss"`` (the only choice; kept for the
    shared signature). Fitted attributes: those of :class:`MLPRegressor` and
    ``classes_``.
    """

    _output_kind = "classification"

    def _loss(self):
        if self.loss not in (None, "log_loss"):
            raise ValueError(f"loss must be 'log_loss' for a classifier, got {self.loss!r}")
        return "binary_cross_entropy_with_logits" if self.n_outputs_ == 1 else "softmax_cross_entropy"

    def _prepare(self, X, y, reset: bool, classes=None):
        X, y = validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        if reset:
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"a classifier needs samples of at least 2 classes; got 1 class: {labels.tolist()}")
            self.classes_ = labels
            self.n_outputs_ = 1 if len(labels) == 2 else len(labels)
            self.out_activation_ = "logistic" if len(labels) == 2 else "softmax"
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels {unknown.tolist()} not in classes_ {self.classes_.tolist()}")
        index = np.searchsorted(self.classes_, y).astype(np.int32)
        targets = index[:, None].astype(np.float32) if self.n_outputs_ == 1 else index
        return _float32(X, "X"), targets

    def fit(self, X, y):
        """Trains on ``X`` (n, features) and class labels ``y`` (n,); returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing the weights and optimizer state.
        The first call needs ``classes``: every label the data will ever have."""
        first = not hasattr(self, "coefs_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit (every label y will have)")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, float64, shape (n, n_classes), rows summing to 1."""
        logits = self._forward(X)
        if self.n_outputs_ == 1:
            p = 0.5 * (1.0 + np.tanh(0.5 * logits[:, 0]))  # the sigmoid, without overflow
            return np.stack([1.0 - p, p], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row, shape (n,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


__all__ = ["MLPClassifier", "MLPRegressor"]
