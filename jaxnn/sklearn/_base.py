"""What ``MLPRegressor`` and ``MLPClassifier`` share (private): scikit-learn's
parameters and their checks, training by each solver, prediction."""

import math
import numbers
import types
import warnings

import jax
import numpy as np
import scipy.sparse
import scipy.special
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from jaxnn import _optim, _placement, _precision, losses, metrics, optim
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.distributed import fetch
from jaxnn.mlp import mlp
from jaxnn.options import EarlyStopping, Stop, TrainState, Tuning
from jaxnn.sklearn._solvers import (
    ACTIVATIONS,
    F32_MAX,
    PREDICT_CHUNK,
    SCHEDULES,
    glorot,
    lbfgs,
    logit_accuracy,
    number,
    sgd_transform,
    stopping_count,
)
from jaxnn.train import fit, predict


class BaseMLP(BaseEstimator):
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
        sizes = (
            [sizes]
            if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool)
            else sizes
        )
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}"
            ) from None
        return [positive_int(s, "each hidden layer size") for s in sizes]

    def _activation(self) -> str:
        allowed = ["identity", "logistic", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus"]
        if not isinstance(self.activation, str) or self.activation not in allowed:
            raise ValueError(f"activation must be one of {allowed}, got {self.activation!r}")
        return ACTIVATIONS.get(self.activation, self.activation)

    def _check_params(self) -> None:
        """Checks the hyperparameters every solver uses."""
        if self.solver not in ("adam", "sgd", "lbfgs"):
            raise ValueError(f"solver must be 'adam', 'sgd' or 'lbfgs', got {self.solver!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(
                f"learning_rate must be one of {list(SCHEDULES)}, got {self.learning_rate!r}"
            )
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
        number(self.tol, "tol", 0)
        number(self.alpha, "alpha", 0)
        number(self.momentum, "momentum", 0, 1)
        number(self.power_t, "power_t", 0)
        # trained in float32: a rate that rounds to 0 would train nothing
        if self.solver != "lbfgs":
            rate = number(self.learning_rate_init, "learning_rate_init", 0, low_open=True)
            if np.float32(rate) == 0:
                raise ValueError(
                    f"learning_rate_init={rate!r} underflows to 0 in float32; nothing would train"
                )
        _precision.resolve_compute_dtype(self.compute_dtype)
        devices = _placement.resolve_devices(self.devices)
        if self.solver == "lbfgs" and self.devices is not None and len(devices) > 1:
            raise ValueError(
                f"solver='lbfgs' trains full-batch on one device, got devices={self.devices!r} ({len(devices)} "
                "devices); pass devices=None or one device, or solver='sgd'/'adam' to split batches over devices"
            )
        n = self.n_iter_no_change
        if not (
            n == np.inf or (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1)
        ):
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
        X = validate_data(
            self, X, reset=reset, dtype=(np.float64, np.float32), accept_sparse=["csr", "csc"]
        )
        return self._dense32(X)

    @staticmethod
    def _dense32(X) -> tuple[np.ndarray, np.dtype]:
        dtype = X.dtype
        X = X.toarray() if scipy.sparse.issparse(X) else X
        if np.abs(X).max(initial=0.0) > F32_MAX:
            raise ValueError(
                f"X has values beyond float32's range (|value| > {F32_MAX:.3g}); rescale it"
            )
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
                sample_weight = _sample_weight(sample_weight, X.shape[0])
                if sample_weight[0] > 0 and np.all(sample_weight == sample_weight[0]):
                    sample_weight = None  # equal weights: the unweighted mean, with its bits
                else:
                    sample_weight = sample_weight.astype(np.float32)
            rng = check_random_state(self.random_state)
            model, sizes = self._model(X.shape[1])
            if first:
                params = glorot(rng, sizes, self.activation == "logistic")
                self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
                self.validation_scores_ = [] if self.early_stopping else None
                self.__dict__.pop("_opt_state", None)
            else:
                if [tuple(np.shape(w)) for w in self.coefs_] != list(
                    zip(sizes[:-1], sizes[1:], strict=False)
                ):
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
        apply_fn = _precision.with_compute_dtype(model.apply, self.compute_dtype)
        device = None if self.devices is None else _placement.resolve_devices(self.devices)[0]
        with jax.default_device(device):
            params, info = lbfgs(
                apply_fn,
                losses.get_loss(self._loss()),
                params,
                X,
                y,
                sample_weight,
                np.float32(self.alpha / total),
                np.int32(self.max_iter),
                np.int32(min(self.max_fun, MAX_EPOCHS)),  # more than int32 counts: no bound
                np.float32(self.tol),
            )
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
            metric = logit_accuracy if self._output_kind == "classification" else "r2"
            kw["metrics"] = (metric,)
        n, batch_size = X.shape[0], self._batch_size(X.shape[0])
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        patience = (
            self.max_iter + 1 if self.n_iter_no_change == np.inf else self.n_iter_no_change + 1
        )
        if not incremental:
            monitor, mode = (
                (f"val_{metrics.get_metric(metric)[0]}", "max") if early else ("loss", "min")
            )
            kw["early_stopping"] = EarlyStopping(
                monitor,
                min(patience, self.max_iter + 1),
                float(self.tol),
                mode,
                restore_best=early,
                best="any",
                reduce_lr=0.2 if adaptive else None,
                min_lr=1e-6,
            )
        continuing = incremental and hasattr(self, "_opt_state")
        l2 = self.alpha / batch_size
        if self.solver == "adam":
            optimizer = optim.adam(
                number(self.learning_rate_init, "learning_rate_init", 0, low_open=True),
                b1=number(self.beta_1, "beta_1", 0, 1, high_open=True),
                b2=number(self.beta_2, "beta_2", 0, 1, high_open=True),
                eps=number(self.epsilon, "epsilon", 0, low_open=True),
                l2=l2,
            )
            opt_state = self._opt_state if continuing else None
        else:
            optimizer = sgd_transform(bool(self.nesterovs_momentum))
            opt_state = self._opt_state if continuing else optimizer.init(params)
            rate = (
                opt_state.learning_rate
                if continuing
                else number(self.learning_rate_init, "learning_rate_init", 0, low_open=True)
            )
            opt_state = opt_state._replace(
                learning_rate=np.float32(rate),
                power_t=np.float32(self.power_t if self.learning_rate == "invscaling" else 0.0),
                momentum=np.float32(number(self.momentum, "momentum", 0, 1)),
                l2=np.float32(l2),
                seen=np.float32(self.t_),
                step_in_epoch=np.int32(0),
                steps_per_epoch=np.int32(math.ceil(n / batch_size)),
                rows=np.float32(n),
            )
        key = jax.random.key(rng.randint(2**31 - 1))
        epochs = 1 if incremental else self.max_iter
        result = fit(
            model,
            params,
            X,
            y,
            loss=self._loss(),
            key=key,
            optimizer=optimizer,
            batch_size=batch_size,
            epochs=epochs,
            shuffle=bool(self.shuffle),
            sample_weight=w_train,
            progress=False,
            tuning=Tuning(compute_dtype=self.compute_dtype),
            devices=self.devices,
            resume=None if opt_state is None else TrainState(params, opt_state, 0, 0, key),
            **kw,
        )
        self._store(result, n, early, adaptive, patience)
        return incremental or result.stop_reason != Stop.COMPLETED

    def _validation_split(self, X, y, sample_weight, rng):
        fraction = number(
            self.validation_fraction, "validation_fraction", 0, 1, low_open=True, high_open=True
        )
        # scikit-learn's rule: stratified by class for one output (binary), else not (multiclass,
        # multilabel); so the same random_state holds out the same rows
        stratify = None
        if self._output_kind == "classification" and self.n_outputs_ == 1:
            stratify = y.astype(bool) if y.ndim == 2 else y
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        parts = train_test_split(*arrays, test_size=fraction, random_state=rng, stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        validation = (
            (parts[1], parts[3]) if sample_weight is None else (parts[1], parts[3], parts[5])
        )
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
        rate = float(_optim.learning_rate_of(self._opt_state))  # adaptive: reduced in the loop
        if self.solver == "adam" or self.learning_rate == "constant":
            rate = float(self.learning_rate_init)
        elif self.learning_rate == "invscaling":
            rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t
        # scikit-learn's rate after the last epoch
        self._optimizer = types.SimpleNamespace(learning_rate=rate)
        tol, start = float(self.tol), float(self.learning_rate_init)
        if early:
            metric = next(k for k in result.history if k.startswith("val_") and k != "val_loss")
            scores = [float(v) if np.isfinite(v) else math.nan for v in result.history[metric]]
            self.validation_scores_ = [*(self.validation_scores_ or []), *scores]
            self.best_validation_score_ = max(
                (v for v in self.validation_scores_ if v == v), default=-math.inf
            )
            self.best_loss_ = None
            self._no_improvement_count = stopping_count(
                scores, True, tol, patience - 1, adaptive, start
            )
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)
            self._no_improvement_count = stopping_count(
                losses_now, False, tol, patience - 1, adaptive, start
            )
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
        X = np.concatenate([X, np.zeros((-n % PREDICT_CHUNK, X.shape[1]), X.dtype)])
        out = predict(self._model(X.shape[1])[0], self._params(), X, batch_size=PREDICT_CHUNK)
        return np.asarray(out)[:n].astype(np.float64), dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags

    def _not_lbfgs(self):
        return self.solver != "lbfgs"


def _sample_weight(sample_weight, n: int) -> np.ndarray:
    """``sample_weight`` as float64 ``(n,)``, by scikit-learn's rules (a number: that
    weight for every row; not all zero), with its public ``check_array`` (finite values)."""
    if isinstance(sample_weight, numbers.Number):
        return np.full(n, sample_weight, dtype=np.float64)
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.shape != (n,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected {(n,)}!")
    if not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return w
