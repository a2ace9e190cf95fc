"""``HalvingRandomSearchCV`` and ``HalvingGridSearchCV`` (see ``jaxnn.sklearn``):
scikit-learn's successive-halving searches over a jaxnn estimator, run as one
compiled :func:`jaxnn.search` instead of one host fit per candidate, fold and
iteration."""

import itertools
import math
import numbers
import time

import jax
import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.metrics import check_scoring
from sklearn.model_selection import HalvingGridSearchCV as _GridCV
from sklearn.model_selection import HalvingRandomSearchCV as _RandomCV
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import indexable

from jaxnn import optim
from jaxnn.mlp import mlp
from jaxnn.options import Tuning
from jaxnn.sklearn._base import BaseMLP
from jaxnn.sklearn._solvers import logit_accuracy
from jaxnn.tune import space
from jaxnn.tune._search import search
from jaxnn.tune.schedulers import SuccessiveHalving

# the estimator's parameters the compiled search can vary (the rest stay fixed)
SEARCHABLE = (
    "hidden_layer_sizes",
    "activation",
    "batch_size",
    "alpha",
    "learning_rate_init",
    "momentum",
    "beta_1",
    "beta_2",
    "epsilon",
)
# scoring -> (metric, sign: +1 where the value is the score, -1 where it is its negative)
SCORING = {
    "classification": {"accuracy": (logit_accuracy, 1), "neg_log_loss": ("loss", -1)},
    "regression": {
        "r2": ("r2", 1),
        "neg_root_mean_squared_error": ("rmse", -1),
        "neg_mean_absolute_error": ("mae", -1),
    },
}


class _Compiled:
    """What both searches share: ``fit`` as one compiled search."""

    def fit(self, X, y=None, groups=None, **params):
        """Runs the search on ``X``, ``y`` (``groups`` for a group splitter) and refits
        the best candidate on every row (``refit=True``); returns self."""
        if params:
            raise TypeError(
                f"fit takes X, y and groups; {sorted(params)} cannot go into the compiled search "
                "(fit parameters such as sample_weight are not routed to its trials)"
            )
        self._validate_params()
        pre, last, prefix = _parts(self.estimator)
        scoring, sign = self._check_options(last, prefix)
        X, y, groups = indexable(X, y, groups)
        splits = list(check_cv(self.cv, y, classifier=is_classifier(last)).split(X, y, groups))
        self.n_splits_ = len(splits)
        candidates = self._schedule()
        names = {k for c in candidates for k in c}
        bad = sorted(
            n for n in names if n.removeprefix(prefix) not in SEARCHABLE or not n.startswith(prefix)
        )
        if self.resource in names:
            raise ValueError(
                f"Cannot use parameter {self.resource} as the resource since it is part of the searched "
                "parameters."
            )
        if bad:
            raise ValueError(
                f"cannot search {bad} in the compiled search: it varies "
                f"{[prefix + n for n in SEARCHABLE]} (the rest stay as the estimator has them)"
            )
        unused = ("momentum",) if last.solver == "adam" else ("beta_1", "beta_2", "epsilon")
        for name in (n for n in names if n.removeprefix(prefix) in unused):
            raise ValueError(
                f"cannot search {name} with solver={last.solver!r}: "
                f"{name.removeprefix(prefix)} is {'sgd' if last.solver == 'adam' else 'adam'}'s"
            )
        estimators = [
            clone(last).set_params(**{k[len(prefix) :]: v for k, v in c.items()})
            for c in candidates
        ]
        for e in estimators:
            e._check_params()
        x, targets, validation, folds, labels = _data(pre, last, X, y, splits)
        # the rows a candidate trains on: its split's training part (the largest fold's)
        rows = len(x) if folds is None else max(len(train) for train, _ in folds)
        model, searched, optimizer, batch_size = _program(
            estimators, last, (rows, x.shape[1]), labels.n_outputs_
        )
        rungs = SuccessiveHalving(
            self.min_resources_,
            self.min_resources_ * self.factor ** (self.n_iterations_ - 1),
            self.factor,
        )
        seed = last.random_state if last.random_state is not None else self.random_state
        key = jax.random.key(check_random_state(seed).randint(2**31 - 1))
        metric = scoring if scoring != "loss" else None
        result = search(
            model,
            None,
            x,
            targets,
            loss=labels._loss(),
            key=key,
            space=searched,
            schedule=rungs,
            num_configs=len(candidates),
            validation=validation if folds is None else "auto",
            cv=folds,
            monitor="val_" + (scoring if isinstance(scoring, str) else scoring.__name__),
            optimizer=optimizer,
            batch_size=batch_size,
            shuffle=bool(last.shuffle),
            metrics=() if metric is None else (metric,),
            progress=bool(self.verbose),
            tuning=Tuning(compute_dtype=last.compute_dtype),
            devices=last.devices,
            refit=False,
        )
        self.search_result_ = result
        self._results(result, candidates, sign, rungs.rungs())
        if self.refit:
            start = time.perf_counter()
            best = clone(self.estimator).set_params(**clone(self.best_params_, safe=False))
            self.best_estimator_ = best.fit(X, y)
            self.refit_time_ = time.perf_counter() - start
        return self

    def _check_options(self, last, prefix: str) -> tuple:
        if self.resource != prefix + "max_iter":
            raise ValueError(
                f"resource must be {prefix + 'max_iter'!r} (epochs: the compiled search trains each candidate "
                f"on from its rung), got {self.resource!r}"
            )
        if last.solver not in ("sgd", "adam"):
            raise ValueError(
                f"the compiled search trains with solver 'sgd' or 'adam', got solver={last.solver!r}"
            )
        if last.solver == "sgd" and last.learning_rate != "constant":
            raise ValueError(
                f"the compiled search trains at a constant learning rate, got learning_rate={last.learning_rate!r}"
            )
        if last.early_stopping:
            raise ValueError(
                "early_stopping=True would hold out a part of each candidate's own training rows; the search "
                "ranks on its cv splits: set early_stopping=False"
            )
        checks = (
            ("aggressive_elimination", False, "the search's first rung is min_resources"),
            ("return_train_score", False, "the compiled search scores the held-out parts only"),
        )
        for name, allowed, why in checks:
            if getattr(self, name) != allowed:
                raise ValueError(f"{name} must be {allowed} ({why}), got {getattr(self, name)!r}")
        if not isinstance(self.refit, bool | np.bool_):
            raise ValueError(
                f"refit must be True or False (one score is searched), got {self.refit!r}"
            )
        if not isinstance(self.factor, numbers.Integral) or self.factor < 2:
            raise ValueError(
                f"factor must be an int >= 2 (the compiled search's eta), got {self.factor!r}"
            )
        kind = last._output_kind
        scoring = SCORING[kind]
        name = self.scoring or ("accuracy" if kind == "classification" else "r2")
        if not isinstance(name, str) or name not in scoring:
            raise ValueError(
                f"scoring for a jaxnn {kind} search must be one of {sorted(scoring)} (computed inside the "
                f"compiled program), got {self.scoring!r}"
            )
        self.scorer_, self.multimetric_ = check_scoring(self.estimator, self.scoring), False
        return scoring[name]

    def _schedule(self) -> list:
        """The candidates (scikit-learn's draws) and scikit-learn's iterations."""
        if self.min_resources == getattr(self, "n_candidates", None) == "exhaust":
            raise ValueError("n_candidates and min_resources cannot be both set to 'exhaust'.")
        estimator = _parts(self.estimator)[1]
        self.max_resources_ = (
            estimator.max_iter if self.max_resources == "auto" else self.max_resources
        )
        self.min_resources_ = (
            1 if self.min_resources in ("smallest", "exhaust") else self.min_resources
        )
        if self.min_resources_ > self.max_resources_:
            raise ValueError(
                f"min_resources_={self.min_resources_} is greater than max_resources_={self.max_resources_}."
            )
        candidates = list(self._generate_candidate_params())
        required = 1 + math.floor(math.log(len(candidates), self.factor))
        if self.min_resources == "exhaust":
            self.min_resources_ = max(
                self.min_resources_, self.max_resources_ // self.factor ** (required - 1)
            )
        possible = 1 + math.floor(math.log(self.max_resources_ // self.min_resources_, self.factor))
        self.n_required_iterations_, self.n_possible_iterations_ = required, possible
        self.n_iterations_ = min(required, possible)
        self.n_resources_ = [
            self.min_resources_ * self.factor**i for i in range(self.n_iterations_)
        ]
        return candidates

    def _results(self, result, candidates: list, sign: int, rungs: tuple) -> None:
        """``cv_results_`` with scikit-learn's keys, one row per candidate and iteration
        it was scored at: its best held-out score by then (what the search ranks)."""
        folds = result.fold_curves  # (trials, epochs, splits) with several splits
        rows = []
        for trial in result.trials:
            i, curve, last = trial["id"], sign * result.curves[trial["id"]], trial["rung"]
            for it in range(self.n_iterations_):
                diverged = trial["status"] == "nan" and it == last + 1
                if it > last and not diverged:
                    break
                if diverged and self.error_score == "raise":
                    raise ValueError(
                        f"candidate {candidates[i]} diverged (its loss went non-finite) and error_score='raise'"
                    )
                seen = curve[: rungs[it]]
                if diverged or np.isnan(seen).all():
                    score = self.error_score if diverged else np.nan
                    splits = [score] * self.n_splits_
                else:  # its best epoch by then: the mean's, and each split's value there
                    e = int(np.nanargmax(seen))
                    score = float(seen[e])
                    splits = [score] if folds is None else (sign * folds[i, e]).tolist()
                rows.append((it, i, score, splits))
        rows.sort(key=lambda r: r[:2])
        n = len(rows)
        scores = np.array([r[2] for r in rows], np.float64)
        splits = np.array([r[3] for r in rows], np.float64).reshape(n, self.n_splits_)
        params = [
            dict(candidates[i], **{self.resource: self.n_resources_[it]}) for it, i, *_ in rows
        ]
        results = {
            "iter": np.array([r[0] for r in rows]),
            "n_resources": np.array([p[self.resource] for p in params]),
        }
        for name in sorted({k for c in candidates for k in c}):
            column = np.ma.MaskedArray(np.empty(n, object), mask=True)
            for r, p in enumerate(params):
                if name in p:
                    column[r] = p[name]
            results[f"param_{name}"] = column
        results["params"] = params
        for k in range(self.n_splits_):
            results[f"split{k}_test_score"] = splits[:, k]
        results["mean_test_score"] = scores
        results["std_test_score"] = splits.std(axis=1)
        floor = np.nanmin(scores) - 1 if not np.isnan(scores).all() else 0.0
        ranked = np.nan_to_num(scores, nan=floor)
        results["rank_test_score"] = (1 + (ranked[None, :] > ranked[:, None]).sum(axis=1)).astype(
            np.int32
        )
        self.cv_results_ = results
        self.n_candidates_ = [
            int((results["iter"] == it).sum()) for it in range(self.n_iterations_)
        ]
        self.n_remaining_candidates_ = self.n_candidates_[-1]
        self.best_index_ = self._select_best_index(self.refit, None, results)
        self.best_params_ = params[self.best_index_]
        self.best_score_ = float(scores[self.best_index_])


class HalvingRandomSearchCV(_Compiled, _RandomCV):
    """scikit-learn's ``HalvingRandomSearchCV`` over a jaxnn estimator, as one compiled
    search. Parameters and fitted attributes are scikit-learn's (see the module
    docstring of ``jaxnn.sklearn`` for what differs); ``search_result_`` is the
    :class:`jaxnn.SearchResult`."""

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_candidates="exhaust",
        factor=3,
        resource="max_iter",
        max_resources="auto",
        min_resources="smallest",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=False,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            estimator,
            param_distributions,
            n_candidates=n_candidates,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )


class HalvingGridSearchCV(_Compiled, _GridCV):
    """scikit-learn's ``HalvingGridSearchCV`` over a jaxnn estimator, as one compiled
    search (every grid point a candidate); see :class:`HalvingRandomSearchCV`."""

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        factor=3,
        resource="max_iter",
        max_resources="auto",
        min_resources="exhaust",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=False,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        super().__init__(
            estimator,
            param_grid,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )


def _parts(estimator) -> tuple:
    """``(the steps before, the jaxnn estimator, its parameters' prefix)``."""
    pre, last, prefix = None, estimator, ""
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        pre, prefix = (estimator[:-1] if len(estimator.steps) > 1 else None), name + "__"
    if not isinstance(last, BaseMLP):
        raise TypeError(
            "estimator must be a jaxnn.sklearn.MLPClassifier or MLPRegressor, or a Pipeline ending in one, "
            f"got {type(last).__name__}"
        )
    return pre, last, prefix


def _data(pre, last, X, y, splits) -> tuple:
    """``(x, targets, validation or None, folds or None, an estimator that knows the
    targets: its loss and outputs)``: with one split, its training part and its
    held-out part; with several, the rows and the folds (``(train, held_out)`` row
    indices). The steps before the estimator are fitted on each split's training part
    on the host: then each split's two parts, transformed by its own steps, are rows of
    ``x`` of their own, and the folds index them."""
    if is_classifier(last) and type_of_target(y) == "multilabel-indicator":
        raise ValueError("multilabel targets are not searched (their score is the subset accuracy)")
    labels = clone(last)
    # the targets of every row, the classes from all of y
    targets = labels._prepare(np.zeros((len(y), 1), np.float32), y, reset=True)[1]
    rows = lambda a, idx: a.iloc[idx] if hasattr(a, "iloc") else np.asarray(a)[idx]
    check = lambda a: clone(last)._check_x(a, reset=True)[0]
    if pre is None:
        x = check(X)
        if len(splits) > 1:
            return x, targets, None, splits, labels
        parts = [(x[train], x[held_out]) for train, held_out in splits]
    else:
        fitted = [clone(pre).fit(rows(X, train), rows(y, train)) for train, _ in splits]
        parts = [
            tuple(check(f.transform(rows(X, idx))) for idx in split)
            for f, split in zip(fitted, splits, strict=True)
        ]
    if len(splits) == 1:
        (x_train, x_held), (train, held_out) = parts[0], splits[0]
        return x_train, targets[train], (x_held, targets[held_out]), None, labels
    starts = np.cumsum([0, *(len(idx) for split in splits for idx in split)])
    ranges = [np.arange(lo, hi) for lo, hi in itertools.pairwise(starts)]  # each part's new rows
    x = np.concatenate([part for pair in parts for part in pair])
    rows_of = np.concatenate([idx for split in splits for idx in split])
    return x, targets[rows_of], None, list(zip(ranges[::2], ranges[1::2], strict=True)), labels


def _program(estimators: list, last, shape, n_outputs: int) -> tuple:
    """``(model, space, optimizer, batch_size)`` of the compiled search: every value
    that differs among the candidates is listed, one per candidate (``batch_size``:
    ``None`` where it differs)."""
    sizes = [e._hidden_sizes() for e in estimators]
    if len({tuple(s) for s in sizes}) > 1 and any(len(set(s)) > 1 or not s for s in sizes):
        raise ValueError(
            f"hidden_layer_sizes {sorted({tuple(s) for s in sizes})}: a searched width and depth are of "
            "hidden layers of equal width, at least one; give e.g. [(32,), (32, 32), (64, 64)]"
        )
    batches = [e._batch_size(shape[0]) for e in estimators]
    adam = last.solver == "adam"
    values = {
        "learning_rate": [float(e.learning_rate_init) for e in estimators],
        "l2": [float(e.alpha) / b for e, b in zip(estimators, batches, strict=True)],
        "batch_size": batches,
        "width": [s[0] if s else 0 for s in sizes],
        "depth": [len(s) for s in sizes],
        "activation": [e._activation() for e in estimators],
        **(
            {
                "b1": [float(e.beta_1) for e in estimators],
                "b2": [float(e.beta_2) for e in estimators],
                "eps": [float(e.epsilon) for e in estimators],
            }
            if adam
            else {"momentum": [float(e.momentum) for e in estimators]}
        ),
    }
    varies = {n: v for n, v in values.items() if n == "learning_rate" or len(set(v)) > 1}
    fixed = {
        n: v[0]
        for n, v in values.items()
        if n not in varies and n not in ("width", "depth", "activation", "batch_size")
    }
    if fixed.get("l2") == 0.0:
        del fixed["l2"]
    name = "adam" if adam else "nesterov" if last.nesterovs_momentum else "momentum"
    same = len({tuple(s) for s in sizes}) == 1
    widest = sizes[0] if same else [max(map(max, sizes))] * max(map(len, sizes))
    sizes_ = [shape[1], *widest, n_outputs]
    model = mlp(sizes_, activation=values["activation"][0], init="glorot_uniform")
    return (
        model,
        {n: space.listed(v) for n, v in varies.items()},
        optim.Optimizer(name, fixed),
        None if "batch_size" in varies else batches[0],
    )
