import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from jaxnn.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# Training is float32: a weight of 2 and a repeated row round differently, and these
# checks compare predictions at rtol=1e-7 (float64's precision). test_sample_weights_*
# below check the weighting itself.
FLOAT32 = "float32 training rounds a weight of 2 and a repeated row differently; rtol=1e-7 is float64 precision"
WEIGHT_CHECKS = [
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
]


@pytest.mark.slow
@parametrize_with_checks(
    [MLPClassifier(), MLPRegressor()],
    expected_failed_checks=lambda est: dict.fromkeys(WEIGHT_CHECKS, FLOAT32),
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_sample_weights_equal_repeated_rows_and_zero_weights_drop_rows(solver):
    x, y = make_regression(40, 3, random_state=0)
    y = y / y.std()
    w = np.r_[np.full(10, 2.0), np.ones(20), np.zeros(10)]
    repeated = np.r_[np.arange(10), np.arange(30)]  # rows 0-9 twice, 10-29 once, 30-39 never
    kw = dict(
        hidden_layer_sizes=(6,), solver=solver, random_state=0, shuffle=False, tol=0.0, max_iter=30
    )
    kw |= {"batch_size": 40} if solver == "sgd" else {}
    weighted = MLPRegressor(**kw).fit(x, y, sample_weight=w)
    kw |= {"batch_size": 40} if solver == "sgd" else {}
    rows = MLPRegressor(**kw).fit(x[repeated], y[repeated])
    np.testing.assert_allclose(weighted.predict(x), rows.predict(x), rtol=1e-4, atol=1e-4)
    plain = MLPRegressor(**kw).fit(x, y)
    assert np.abs(weighted.predict(x) - plain.predict(x)).max() > 1e-2  # the weights did something


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    return train_test_split(x, names, test_size=0.3, random_state=0, stratify=y)


def test_classifier_string_labels_multiclass(iris):
    xtr, xte, ytr, yte = iris
    clf = make_pipeline(
        StandardScaler(), MLPClassifier((16,), learning_rate_init=0.01, random_state=0)
    )
    clf.fit(xtr, ytr)
    assert clf.score(xte, yte) > 0.9
    assert set(clf.predict(xte)) <= {"setosa", "versicolor", "virginica"}
    proba = clf.predict_proba(xte)
    assert proba.shape == (len(xte), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf[-1].classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert clf[-1].out_activation_ == "softmax" and clf[-1].coefs_[-1].shape == (16, 3)


def test_classifier_binary_integer_labels_and_sklearn_accuracy():
    x, y = make_classification(400, 6, random_state=0)
    y = np.where(y == 1, 7, -3)  # arbitrary integer labels
    xtr, xte, ytr, yte = train_test_split(x, y, random_state=0)
    ours = MLPClassifier((32,), random_state=0, max_iter=100).fit(xtr, ytr)
    assert ours.out_activation_ == "logistic" and ours.coefs_[-1].shape == (32, 1)
    assert ours.classes_.tolist() == [-3, 7]
    from sklearn.neural_network import MLPClassifier as SkMLP

    theirs = SkMLP((32,), random_state=0, max_iter=100).fit(xtr, ytr)
    assert ours.score(xte, yte) >= theirs.score(xte, yte) - 0.03
    assert len(ours.loss_curve_) == ours.n_iter_ <= 100 and ours.t_ == ours.n_iter_ * len(xtr)


def test_regressor_grid_search_and_cross_val_score():
    x, y = make_regression(300, 5, noise=5.0, random_state=0)
    y = y / y.std()
    scores = cross_val_score(
        MLPRegressor((32,), learning_rate_init=0.01, random_state=0), x, y, cv=3
    )
    assert scores.shape == (3,) and scores.min() > 0.9
    grid = GridSearchCV(
        MLPRegressor((16,), random_state=0, max_iter=50), {"learning_rate_init": [1e-4, 1e-2]}, cv=2
    ).fit(x, y)
    assert grid.best_params_ == {"learning_rate_init": 1e-2}
    assert grid.best_estimator_.predict(x[:4]).shape == (4,)


def test_regressor_multi_output_and_loss():
    x, y = make_regression(200, 4, n_targets=3, random_state=0)
    reg = MLPRegressor((16,), loss="huber", random_state=0, max_iter=20).fit(x, y / y.std())
    assert reg.predict(x).shape == (200, 3) and reg.n_outputs_ == 3


def test_batch_size_one_sgd_fits_the_seed_task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    reg = MLPRegressor(
        (4, 4),
        solver="sgd",
        batch_size=1,
        learning_rate_init=0.02,
        momentum=0.0,
        max_iter=60,
        random_state=0,
    ).fit(x, y)
    assert reg.n_iter_ >= 10 and reg.t_ == 200 * reg.n_iter_
    assert reg.score(x, y) > 0.6


def test_early_stopping_keeps_the_best_validation_score(iris):
    xtr, _, ytr, _ = iris
    clf = MLPClassifier(
        (8,), early_stopping=True, n_iter_no_change=3, learning_rate_init=0.05, random_state=0
    )
    clf.fit(StandardScaler().fit_transform(xtr), ytr)
    assert clf.n_iter_ < 200 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_partial_fit_continues_and_needs_classes(iris):
    xtr, _, ytr, _ = iris
    xtr = StandardScaler().fit_transform(xtr)
    clf = MLPClassifier((16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(xtr, ytr)
    for _ in range(30):
        clf.partial_fit(xtr, ytr, classes=["setosa", "versicolor", "virginica"])
    assert (
        clf.n_iter_ == 1 and len(clf.loss_curve_) == 30 and clf.t_ == 30 * len(xtr)
    )  # n_iter_: this call's
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(xtr[:2], ["setosa", "tulip"])
    with pytest.raises(ValueError, match="is not the same as on the last call"):
        clf.partial_fit(xtr, ytr, classes=["setosa", "versicolor"])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.set_params(early_stopping=True).partial_fit(xtr, ytr)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_warm_start_continues_and_random_state_reproduces():
    x, y = make_regression(100, 3, random_state=1)
    y = y / y.std()
    a = MLPRegressor((8,), max_iter=5, random_state=3).fit(x, y)
    b = MLPRegressor((8,), max_iter=5, random_state=3).fit(x, y)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    a.set_params(warm_start=True).fit(x, y)
    assert (
        a.n_iter_ == 5 and len(a.loss_curve_) == 10 and a.t_ == 1000
    )  # n_iter_ counts this fit's epochs
    with pytest.raises(ValueError, match="hidden_layer_sizes changed"):
        a.set_params(hidden_layer_sizes=(9,)).fit(x, y)


def test_fitted_estimator_pickles_and_predicts_the_same(iris):
    xtr, xte, ytr, _ = iris
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(xtr, ytr)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(xte), clf.predict_proba(xte))
    clone.partial_fit(xtr, ytr)  # the optimizer state survived too
    assert clone.n_iter_ == 1 and len(clone.loss_curve_) == len(clf.loss_curve_) + 1
    assert int(clone._opt_state.count) == int(clf._opt_state.count) + 1


def test_convergence_warning_when_max_iter_is_reached():
    x, y = make_regression(50, 2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\)"):
        MLPRegressor((4,), max_iter=2, random_state=0).fit(x, y)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"solver": "newton"}, ValueError, "solver must be 'adam', 'sgd' or 'lbfgs'"),
        ({"learning_rate": "cosine"}, ValueError, "learning_rate must be one of"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change must be an int >= 1 or np.inf"),
        ({"verbose": -1}, TypeError, "verbose must be True, False or an int >= 0"),
        ({"max_fun": 0}, ValueError, "max_fun must be >= 1"),
        ({"hidden_layer_sizes": (4, 0)}, ValueError, "hidden layer size must be >= 1"),
        ({"hidden_layer_sizes": "wide"}, TypeError, "each hidden layer size must be an int"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
        ({"learning_rate_init": -0.1}, ValueError, "learning_rate_init must be a finite number in"),
        (
            {"learning_rate_init": float("nan")},
            ValueError,
            "learning_rate_init must be a finite number in",
        ),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 500}, ValueError, "larger than the 40 training rows"),
        ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
        ({"alpha": -1.0}, ValueError, "alpha must be a finite number in"),
        ({"momentum": 1.5}, ValueError, "momentum must be a finite number in"),
        (
            {"validation_fraction": 1.0, "early_stopping": True},
            ValueError,
            "validation_fraction must be a finite number in",
        ),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
        ({"compute_dtype": "float8"}, ValueError, "compute_dtype"),
        (
            {"learning_rate_init": 1e-50},
            ValueError,
            "learning_rate_init=1e-50 underflows to 0 in float32",
        ),
        ({"solver": "sgd", "learning_rate_init": 1e-46}, ValueError, "underflows to 0 in float32"),
        (
            {"solver": "lbfgs", "compute_dtype": "int8"},
            ValueError,
            "compute_dtype must be 'auto' or one of",
        ),
        (
            {"solver": "lbfgs", "devices": "gpu"},
            TypeError,
            "devices must be None, a count or a sequence",
        ),
        ({"solver": "sgd", "devices": 0}, ValueError, r"devices=0: expected a count in \[1, "),
    ],
)
def test_bad_hyperparameters_fail_at_fit_with_a_clear_message(params, error, match):
    x, y = make_regression(40, 3, random_state=0)
    reg = MLPRegressor(**params)  # scikit-learn's rule: __init__ never checks
    with pytest.raises(error, match=match):
        reg.fit(x, y)
    with pytest.raises(NotFittedError):
        reg.predict(x)


def test_a_max_fun_past_int32_is_no_bound_as_in_scikit_learn():
    x, y = make_regression(40, 3, random_state=0)
    fitted = MLPRegressor(solver="lbfgs", max_fun=2**40, max_iter=20, random_state=0).fit(x, y)
    same = MLPRegressor(solver="lbfgs", max_fun=2**31 - 1, max_iter=20, random_state=0).fit(x, y)
    np.testing.assert_array_equal(fitted.predict(x), same.predict(x))


@pytest.mark.parametrize("classes", [2, 4])
def test_early_stopping_holds_out_the_rows_scikit_learn_holds_out(monkeypatch, classes):
    import sklearn.neural_network._multilayer_perceptron as sk_mlp
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP

    import jaxnn.sklearn._base as base

    held = {}

    def recording(name):
        def split(*arrays, **kw):
            parts = train_test_split(*arrays, **kw)
            held[name] = parts[1]
            return parts

        return split

    monkeypatch.setattr(sk_mlp, "train_test_split", recording("sklearn"))
    monkeypatch.setattr(base, "train_test_split", recording("jaxnn"))
    x, y = make_classification(120, 6, n_informative=4, n_classes=classes, random_state=0)
    y[0] = classes  # a class with one sample: scikit-learn trains (multiclass is not stratified)
    kw = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=3, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning, and scikit-learn's on the rare class
        if classes == 2:  # binary is stratified: a class of one cannot be
            y[0] = 1
        SkMLP(**kw).fit(x, y)
        MLPClassifier(**kw).fit(x, y)
    np.testing.assert_array_equal(held["jaxnn"], held["sklearn"].astype(np.float32))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_huge_max_iter_costs_the_epochs_trained(solver):
    # max_iter=10**9 used to set the compiled loop's length: 120 s and counting on 60 rows
    x, y = make_regression(60, 3, random_state=0)
    reg = MLPRegressor(
        (8,), max_iter=10**9, solver=solver, learning_rate_init=0.01, random_state=0
    ).fit(x, y)
    assert reg.n_iter_ < 100_000 and reg._no_improvement_count > reg.n_iter_no_change


def test_lbfgs_computes_in_the_compute_dtype_asked_for():
    x, y = make_regression(60, 3, random_state=0)
    fit = lambda dtype: MLPRegressor(
        (8,), solver="lbfgs", max_iter=30, random_state=0, compute_dtype=dtype
    ).fit(x, y)
    f32, bf16 = fit("float32"), fit("bfloat16")
    assert not np.array_equal(f32.coefs_[0], bf16.coefs_[0])  # bfloat16 rounding moved the iterates
    assert abs(f32.score(x, y) - bf16.score(x, y)) < 0.2


def test_a_failed_fit_leaves_the_fitted_estimator_as_it_was(iris):
    xtr, xte, ytr, _ = iris
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(xtr, ytr)
    before = clf.predict_proba(xte)
    binary = np.where(ytr == "setosa", "setosa", "other")
    with pytest.raises(ValueError, match="learning_rate_init"):
        clf.set_params(learning_rate_init=-1.0).fit(xtr, binary)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"] and clf.n_outputs_ == 3
    np.testing.assert_array_equal(clf.predict_proba(xte), before)


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import (  # noqa: E402
    LABELS,
    X,
    Y,
    bad_input_test,
    bad_lrs,
    case,
    expect,
    nonfinite,
    of_dtype,
    poisoned,
)

# scikit-learn estimators --------------------------------------------------------------

pytest.importorskip("sklearn")
from jaxnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

estimators = st.sampled_from([MLPRegressor, MLPClassifier])


def est_fit(cls, x=X, y=None, **params):
    y = (LABELS if cls is MLPClassifier else Y[:, 0]) if y is None else y
    return cls(hidden_layer_sizes=(4,), max_iter=2, **params).fit(x, y)


@case("sklearn", "rank")
def _(data, tmp):
    expect(ValueError, "Expected 2D array", est_fit, data.draw(estimators), x=np.ones(10))


@case("sklearn", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    expect(
        ValueError,
        "inconsistent numbers of samples",
        est_fit,
        data.draw(estimators),
        y=np.arange(n) % 2,
    )


@case("sklearn", "nonfinite")
def _(data, tmp):
    expect(
        ValueError,
        "Input X contains (NaN|infinity)",
        est_fit,
        data.draw(estimators),
        x=poisoned(data, X, data.draw(nonfinite)),
    )


@case("sklearn", "empty")
def _(data, tmp):
    expect(
        ValueError,
        r"0 sample\(s\)",
        est_fit,
        data.draw(estimators),
        x=np.ones((0, 3)),
        y=np.ones(0),
    )


@case("sklearn", "dtype")
def _(data, tmp):
    for kind in ("str", "complex"):
        expect(
            (ValueError, TypeError),
            "could not convert|Complex data not supported",
            est_fit,
            data.draw(estimators),
            x=of_dtype(kind),
        )


@case("sklearn", "overflow")
def _(data, tmp):
    x = poisoned(data, X, 0).astype(np.float64)
    x[0, 0] = data.draw(st.floats(1e39, 1e300))
    expect(ValueError, "beyond float32's range", est_fit, data.draw(estimators), x=x)


@case("sklearn", "labels")
def _(data, tmp):
    y = LABELS + data.draw(st.floats(0.1, 0.9))
    expect(ValueError, "Unknown label type", est_fit, MLPClassifier, y=y)


@case("sklearn", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(11, 10**6)))
    expect(
        ValueError,
        r"batch_size must be >= 1|larger than the 10 training rows",
        est_fit,
        data.draw(estimators),
        batch_size=size,
    )


@case("sklearn", "learning_rate")
def _(data, tmp):
    expect(
        ValueError,
        r"learning_rate_init must be a finite number in \(0",
        est_fit,
        data.draw(estimators),
        learning_rate_init=data.draw(bad_lrs),
    )


@case("sklearn", "name")
def _(data, tmp):
    valid = {
        "adam",
        "sgd",
        "lbfgs",
        "identity",
        "logistic",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "gelu",
        "softplus",
    }
    name = data.draw(st.text(max_size=8).filter(lambda s: s not in valid))
    for field in ("solver", "activation"):
        expect(ValueError, f"{field} must be", est_fit, data.draw(estimators), **{field: name})


test_bad_input_gets_a_clear_error = bad_input_test("sklearn")
