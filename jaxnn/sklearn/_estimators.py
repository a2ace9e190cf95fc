"""``MLPRegressor`` and ``MLPClassifier`` (see ``jaxnn.sklearn``)."""

import numpy as np
import scipy.sparse
import scipy.special
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d, validate_data

from jaxnn.sklearn._base import BaseMLP
from jaxnn.sklearn._solvers import (
    F32_MAX,
    REGRESSION_LOSSES,
    log_loss,
)


class MLPRegressor(RegressorMixin, BaseMLP):
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
        if not isinstance(loss, str) or loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {list(REGRESSION_LOSSES)}, got {loss!r}")
        return loss

    def _loss(self):
        return REGRESSION_LOSSES[self._loss_name()]

    def _prepare(self, X, y, reset: bool, classes=None, incremental=False):
        del classes, incremental  # a classifier's
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=(np.float64, np.float32),
            multi_output=True,
            y_numeric=True,
            accept_sparse=["csr", "csc"],
        )
        X, dtype = self._dense32(X)
        y2 = np.asarray(y, np.float64).reshape(len(y), -1)
        if self._loss_name() == "poisson" and (y2 < 0).any():
            raise ValueError("loss='poisson' needs targets >= 0 (counts), got negative values in y")
        if reset:
            self.n_outputs_ = y2.shape[1]
            self.out_activation_ = "exp" if self._loss_name() == "poisson" else "identity"
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, the fitted model {self.n_outputs_}")
        if np.abs(y2).max(initial=0.0) > F32_MAX:
            raise ValueError(
                f"y has values beyond float32's range (|value| > {F32_MAX:.3g}); rescale it"
            )
        return X, y2.astype(np.float32), dtype

    def fit(self, X, y, sample_weight=None):
        """Trains on ``X`` (n, features) and ``y`` (n,) or (n, outputs), each row
        weighted by ``sample_weight`` (n,) when given; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(BaseMLP._not_lbfgs)
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


class MLPClassifier(ClassifierMixin, BaseMLP):
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
            self,
            X,
            y,
            reset=reset,
            dtype=(np.float64, np.float32),
            multi_output=True,
            accept_sparse=["csr", "csc"],
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
            raise ValueError(
                "classes must be passed on the first call to partial_fit (every label y will have)"
            )
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
            raise ValueError(
                "y switched between multilabel indicators and class labels since the last fit"
            )
        if multilabel:
            return X, np.asarray(y, np.float32), dtype
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"y has labels {unknown.tolist()} not in classes_ {self.classes_.tolist()}"
            )
        index = np.searchsorted(self.classes_, y).astype(np.int32)
        targets = index if self.out_activation_ == "softmax" else index[:, None].astype(np.float32)
        return X, targets, dtype

    def fit(self, X, y, sample_weight=None):
        """Trains on ``X`` (n, features) and class labels ``y`` (n,) (or multilabel
        indicators (n, labels)), each row weighted by ``sample_weight``; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(BaseMLP._not_lbfgs)
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
