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

``HalvingRandomSearchCV`` and ``HalvingGridSearchCV`` are scikit-learn's, with its
parameters and fitted attributes (``best_estimator_``, ``best_params_`` in the
user's spelling, ``best_score_``, ``cv_results_``, ``n_resources_``,
``n_candidates_``, ...), over one of these estimators or a ``Pipeline`` ending in one
(its steps before the estimator are fitted on each split's training part, on the host,
and the search trains on the transformed splits).
The candidates are scikit-learn's own draws (``ParameterSampler``/``ParameterGrid``
with ``random_state``) and its iterations (``factor``, ``min_resources``,
``max_resources``, ``n_candidates``); the resource is ``max_iter`` (epochs). Instead
of a host fit per candidate, fold and iteration, the whole search is one
:func:`jaxnn.search` (successive halving decided inside the compiled program);
``search_result_`` is its :class:`jaxnn.SearchResult`. Deliberately unlike
scikit-learn's:

- A promoted candidate trains on from its params, not again from scratch (the
  resource is epochs in all), and promotion is asynchronous (ASHA: the top
  ``1/factor`` of those that reached the rung so far), so ``n_candidates_`` after
  the first iteration may differ from ``ceil(n / factor)``.
- ``mean_test_score`` is the candidate's best held-out score by that iteration (what
  the search ranks on); ``splitK_test_score`` and ``std_test_score`` are each
  split's score at that best epoch. The timings are not kept. The estimator's own
  stopping rule (``tol``, ``n_iter_no_change``) applies to the refit only.
- What cannot compile is refused, never run another way: a searched parameter
  other than ``hidden_layer_sizes`` (layers of equal width; widths and depths may
  differ), ``activation``, ``batch_size`` (each size trains in its own bucket of
  slots), ``alpha``, ``learning_rate_init``, ``momentum``, ``beta_1``, ``beta_2``,
  ``epsilon``; ``solver="lbfgs"``; a learning-rate schedule; a ``scoring`` other
  than ``"accuracy"``/``"neg_log_loss"`` (classifier) or ``"r2"``,
  ``"neg_root_mean_squared_error"``, ``"neg_mean_absolute_error"`` (regressor);
  fit parameters; ``return_train_score=True`` and ``aggressive_elimination=True``.
- ``resource`` defaults to ``"max_iter"`` and ``return_train_score`` to ``False``.
  Initial weights are Glorot-uniform draws from each candidate's own jaxnn key.

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
from jaxnn.sklearn._search import HalvingGridSearchCV as HalvingGridSearchCV
from jaxnn.sklearn._search import HalvingRandomSearchCV as HalvingRandomSearchCV

# their public home (and pickles')
for _cls in (MLPClassifier, MLPRegressor, HalvingRandomSearchCV, HalvingGridSearchCV):
    _cls.__module__ = "jaxnn.sklearn"

__all__ = ["HalvingGridSearchCV", "HalvingRandomSearchCV", "MLPClassifier", "MLPRegressor"]
