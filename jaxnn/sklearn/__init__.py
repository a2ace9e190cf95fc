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
``"adaptive"``. Needs scikit-learn (``pip install 'jaxnn-mlp[examples]'``).

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

try:
    import sklearn  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("jaxnn.sklearn needs scikit-learn>=1.6: pip install scikit-learn") from err

from jaxnn.sklearn._estimators import MLPClassifier as MLPClassifier
from jaxnn.sklearn._estimators import MLPRegressor as MLPRegressor

# their public home (and pickles')
MLPClassifier.__module__ = MLPRegressor.__module__ = "jaxnn.sklearn"

__all__ = ["MLPClassifier", "MLPRegressor"]
