"""jaxnn.sklearn's HalvingRandomSearchCV and HalvingGridSearchCV: scikit-learn's
searches run as one compiled jaxnn.search."""

import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import HalvingRandomSearchCV as SkHalvingRandomSearchCV
from sklearn.model_selection import ParameterSampler, ShuffleSplit, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import jaxnn
from jaxnn.sklearn import HalvingGridSearchCV, HalvingRandomSearchCV, MLPClassifier, MLPRegressor

ONE_SPLIT = ShuffleSplit(n_splits=1, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def binary():
    x, y = make_classification(n_samples=160, n_features=6, n_informative=4, random_state=0)
    return StandardScaler().fit_transform(x).astype(np.float32), y


def _clf(**kw):
    return MLPClassifier(
        **{"solver": "sgd", "batch_size": 16, "random_state": 0, "max_iter": 9, **kw}
    )


def test_a_random_search_is_the_compiled_search_with_scikit_learns_attributes(binary):
    x, y = binary
    dists = {
        "learning_rate_init": loguniform(1e-3, 1.0),
        "hidden_layer_sizes": [(4,), (8,), (4, 4)],  # width and depth
        "activation": ["relu", "tanh"],
        "batch_size": [8, 16],  # a bucket of slots each
    }
    search = HalvingRandomSearchCV(
        _clf(), dists, n_candidates=9, min_resources=1, cv=ONE_SPLIT, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the refit's max_iter
        search.fit(x, y)
    drawn = list(ParameterSampler(dists, 9, random_state=0))  # scikit-learn's candidates
    first = [
        p
        for p, it in zip(search.cv_results_["params"], search.cv_results_["iter"], strict=True)
        if it == 0
    ]
    assert sorted(map(repr, first)) == sorted(repr(dict(c, max_iter=1)) for c in drawn)
    assert search.n_resources_ == [1, 3, 9] and search.n_candidates_[0] == 9
    assert search.n_iterations_ == 3 and search.n_candidates_ == sorted(search.n_candidates_)[::-1]
    rows = len(search.cv_results_["iter"])
    assert sum(search.n_candidates_) == rows
    assert (search.cv_results_["split0_test_score"] == search.cv_results_["mean_test_score"]).all()
    assert (search.cv_results_["std_test_score"] == 0).all()  # one split
    for name in ("n_resources", "mean_test_score", "rank_test_score", "param_activation"):
        assert len(search.cv_results_[name]) == rows
    assert search.cv_results_["rank_test_score"][search.best_index_] >= 1
    # the winner: its own params, in the user's spelling, with the resource
    champion = search.search_result_.trials[0]
    assert search.best_params_ == dict(drawn[champion["id"]], max_iter=9)
    assert isinstance(search.best_params_["hidden_layer_sizes"], tuple)
    assert {len(s["hidden_layer_sizes"]) for s in drawn} == {1, 2}  # both depths drawn
    assert {s["batch_size"] for s in drawn} == {8, 16}
    assert search.best_score_ == pytest.approx(champion["score"])
    # the score is the held-out accuracy (one logistic output: class 1 above logit 0)
    _, held_out = next(ONE_SPLIT.split(x))
    model, params = search.search_result_.best_model()
    predicted = np.asarray(jaxnn.predict(model, params, x[held_out]))[:, 0] > 0
    curve = search.search_result_.curves[champion["id"]]
    assert accuracy_score(y[held_out], predicted) == pytest.approx(curve[~np.isnan(curve)][-1])
    # refit on every row, as scikit-learn's
    assert isinstance(search.best_estimator_, MLPClassifier)
    assert search.best_estimator_.get_params()["max_iter"] == 9
    assert search.score(x, y) == search.best_estimator_.score(x, y)
    assert search.predict(x).shape == (len(x),) and list(search.classes_) == [0, 1]
    assert clone(search).get_params().keys() == search.get_params().keys()


@pytest.mark.slow  # a search and scikit-learn's each; CI runs it
@pytest.mark.parametrize(
    "n_candidates, min_resources, max_resources, factor",
    [(9, "smallest", 9, 3), (20, 2, 40, 2), (4, "exhaust", 27, 3)],
)
def test_the_halving_schedule_and_candidates_are_scikit_learns(
    binary, n_candidates, min_resources, max_resources, factor
):
    x, y = binary
    # names both estimators take (for the MLP: adam's epsilon)
    dists = {"alpha": loguniform(1e-5, 1e-2), "epsilon": loguniform(1e-9, 1e-7)}
    kw = dict(n_candidates=n_candidates, min_resources=min_resources, max_resources=max_resources,
              factor=factor, cv=ONE_SPLIT, random_state=3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = HalvingRandomSearchCV(_clf(solver="adam"), dists, **kw).fit(x, y)
        theirs = SkHalvingRandomSearchCV(
            SGDClassifier(random_state=0), dists, resource="max_iter", **kw
        ).fit(x, y)
    for name in ("n_iterations_", "n_required_iterations_", "n_possible_iterations_",
                 "min_resources_", "max_resources_", "n_resources_"):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.n_candidates_[0] == theirs.n_candidates_[0]
    first = lambda s: [
        p for p, i in zip(s.cv_results_["params"], s.cv_results_["iter"], strict=True) if i == 0
    ]
    assert sorted(map(repr, first(ours))) == sorted(map(repr, first(theirs)))


# scikit-learn's own checks (sklearn/model_selection/tests/test_successive_halving.py:
# test_n_iterations and test_random_search), with max_iter as the resource
@pytest.mark.slow  # a compiled search each; CI runs it
@pytest.mark.parametrize(
    "max_resources, n_iterations, n_possible_iterations",
    [  # four of its nine rows
        (1024, 5, 9),
        (511, 5, 7),
        (31, 3, 3),
        (4, 1, 1),
    ],
)
def test_scikit_learns_own_iteration_counts_hold(
    binary, max_resources, n_iterations, n_possible_iterations
):
    x, y = binary
    grid = {
        "learning_rate_init": [0.01, 0.1],
        "alpha": [10.0**-k for k in range(1, 11)],
    }  # 20 candidates
    search = HalvingGridSearchCV(
        _clf(), grid, cv=2, factor=2, max_resources=max_resources, min_resources=4
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x[:64], y[:64])
    assert search.n_required_iterations_ == 5
    assert (search.n_iterations_, search.n_possible_iterations_) == (
        n_iterations,
        n_possible_iterations,
    )
    assert search.n_resources_ == [4 * 2**i for i in range(n_iterations)]


@pytest.mark.parametrize(
    "n_candidates, expected", [("exhaust", 8), (8, 8), (7, 7), (9, 9)]
)  # ask for what 'exhaust' gives, less, and more than 'reasonable'
def test_scikit_learns_own_candidate_counts_hold(binary, n_candidates, expected):
    x, y = binary
    search = HalvingRandomSearchCV(_clf(), {"learning_rate_init": loguniform(1e-3, 1.0)}, n_candidates=n_candidates,
                                   cv=ONE_SPLIT, max_resources=32, factor=2, min_resources=4, refit=False)  # fmt: skip
    search.fit(x, y)
    assert search.n_candidates_[0] == expected
    if n_candidates == "exhaust":  # the last iteration uses as much as it can
        assert search.n_resources_[-1] == 32


def test_a_grid_search_over_a_pipeline_keeps_the_pipelines_spelling(binary):
    x, y = binary
    grid = {
        "mlpclassifier__learning_rate_init": [0.01, 0.1, 0.3],
        "mlpclassifier__alpha": [1e-4, 1e-2],
    }
    pipe = make_pipeline(StandardScaler(), _clf())
    search = HalvingGridSearchCV(
        pipe, grid, resource="mlpclassifier__max_iter", max_resources=9, cv=ONE_SPLIT
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x * 10.0 + 3.0, y)  # the scaler, fitted on the training part, undoes it
    assert search.n_candidates_[0] == 6 and search.n_resources_ == [3, 9]  # 'exhaust': 9 // 3**1
    assert set(search.best_params_) == {*grid, "mlpclassifier__max_iter"}
    assert search.best_params_["mlpclassifier__max_iter"] == search.n_resources_[-1]
    assert search.best_estimator_.steps[0][0] == "standardscaler"
    assert search.best_score_ > 0.7
    # the search itself in a pipeline, and cloned
    outer = make_pipeline(StandardScaler(), clone(search).set_params(estimator=_clf(), param_grid={
        "learning_rate_init": [0.05, 0.2]}, resource="max_iter"))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert outer.fit(x, y).score(x, y) > 0.7


def test_a_pipeline_under_k_fold_fits_its_steps_on_each_folds_training_part(binary):
    x, y = binary
    x = x * 10.0 + 3.0
    pipe = make_pipeline(StandardScaler(), _clf())
    search = HalvingGridSearchCV(pipe, {"mlpclassifier__learning_rate_init": [0.05, 0.2]},
                                 resource="mlpclassifier__max_iter", max_resources=9, cv=3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x, y)
    folds = list(StratifiedKFold(3).split(x, y))  # scikit-learn's cv=3 for a classifier
    keywords = search.search_result_.replay(0)  # fold 0's parts, scaled by its own scaler
    train, held_out = folds[0]  # (padded with weight-0 rows to the largest fold's sizes)
    scaler = StandardScaler().fit(x[train])
    for got, rows in ((keywords["x"], train), (keywords["validation"][0], held_out)):
        np.testing.assert_allclose(
            np.asarray(got)[: len(rows)], scaler.transform(x[rows]), rtol=1e-5, atol=1e-5
        )
    assert search.n_splits_ == 3 and "split2_test_score" in search.cv_results_
    assert search.best_score_ > 0.7 and search.best_estimator_.steps[0][0] == "standardscaler"


@pytest.mark.slow  # end to end; CI runs it
def test_a_k_fold_regression_search_ranks_on_scikit_learns_folds():
    x, y = make_regression(n_samples=150, n_features=5, noise=5.0, random_state=0)
    x = StandardScaler().fit_transform(x)
    y = (y - y.mean()) / y.std()
    reg = MLPRegressor(
        solver="adam", batch_size=25, random_state=0, max_iter=9, hidden_layer_sizes=(8, 8)
    )
    dists = {"learning_rate_init": loguniform(1e-3, 0.1), "hidden_layer_sizes": [(4, 4), (8, 8)]}
    search = HalvingRandomSearchCV(reg, dists, n_candidates=6, cv=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x, y)
    assert search.n_splits_ == 3 and search.search_result_.monitor == "val_r2"
    # each split's score at the candidate's best epoch by then: their mean is the mean score
    splits = np.stack([search.cv_results_[f"split{k}_test_score"] for k in range(3)], axis=1)
    np.testing.assert_allclose(
        splits.mean(axis=1), search.cv_results_["mean_test_score"], rtol=1e-5
    )
    np.testing.assert_allclose(search.cv_results_["std_test_score"], splits.std(axis=1))
    assert (
        search.cv_results_["std_test_score"] > 0
    ).all() and "split3_test_score" not in search.cv_results_
    assert 0.5 < search.best_score_ <= 1.0  # the mean held-out r2 of the 3 folds
    assert search.best_estimator_.score(x, y) > 0.5


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(estimator=_clf(solver="lbfgs")), "solver 'sgd' or 'adam'"),
        (dict(scoring=accuracy_score), "scoring for a jaxnn classification search"),
        (dict(scoring="f1"), "must be one of"),
        (dict(resource="n_samples"), "resource must be 'max_iter'"),
        (dict(aggressive_elimination=True), "aggressive_elimination must be False"),
        (dict(return_train_score=True), "return_train_score must be False"),
        (
            dict(param_distributions={"tol": [1e-3, 1e-4], "shuffle": [True, False]}),
            r"cannot search \['shuffle', 'tol'\]",
        ),
        (dict(param_distributions={"hidden_layer_sizes": [(4,), (4, 8)]}), "equal width"),
        (dict(param_distributions={"hidden_layer_sizes": [(), (4,)]}), "at least one"),
        (dict(param_distributions={"beta_1": [0.8, 0.9]}), "beta_1 is adam's"),
        (dict(param_distributions={"max_iter": [3, 9]}), "as the resource"),
        (dict(estimator=_clf(learning_rate="adaptive")), "constant learning rate"),
        (dict(factor=2.5), "factor must be an int"),
        (dict(min_resources="exhaust", n_candidates="exhaust"), "cannot be both"),
        (dict(min_resources=20), "greater than max_resources_"),
        (dict(estimator=SGDClassifier()), "MLPClassifier or MLPRegressor"),
    ],
)
def test_what_cannot_compile_is_refused_with_what_would(binary, change, match):
    x, y = binary
    kw = dict(estimator=_clf(), param_distributions={"learning_rate_init": [0.01, 0.1]},
              n_candidates=2, cv=ONE_SPLIT)  # fmt: skip
    with pytest.raises((ValueError, TypeError), match=match):
        HalvingRandomSearchCV(**{**kw, **change}).fit(x, y)


def test_fit_parameters_are_refused_not_dropped(binary):
    x, y = binary
    search = HalvingRandomSearchCV(_clf(), {"alpha": [1e-4, 1e-3]}, cv=ONE_SPLIT)
    with pytest.raises(TypeError, match="sample_weight"):
        search.fit(x, y, sample_weight=np.ones(len(y)))
