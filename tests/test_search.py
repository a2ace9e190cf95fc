"""jaxnn.search: hyperparameter search inside the compiled program."""

import jax
import numpy as np
import pytest
from helpers import assert_bitwise_equal

import jaxnn

X, Y = jaxnn.make_regression(jax.random.key(0), n=200)
SPACE = {"learning_rate": jaxnn.space.loguniform(1e-3, 0.5), "momentum": jaxnn.space.uniform(0.0, 0.9)}


def run(schedule=None, *, space=SPACE, model=None, num_configs=20, slots=4, key=3, **kw):
    model = model or jaxnn.mlp([3, 8, 1])
    schedule = schedule or jaxnn.SuccessiveHalving(1, 9, 3)
    return jaxnn.search(model, None, X, Y, loss="mse", key=jax.random.key(key), space=space, schedule=schedule,
                        num_configs=num_configs, slots=slots, progress=False, **kw)  # fmt: skip


def reference(curves: np.ndarray, rungs, eta: int, slots: int, brackets, diverged) -> tuple[list, list]:
    """NumPy successive halving with slot refill, every slot advancing together: the
    rule jaxnn.search compiles, replayed from the monitored values it recorded (and
    the trials whose training loss went non-finite, which free their slot)."""
    n = len(curves)
    status, epochs, best = ["pending"] * n, [0] * n, [np.inf] * n
    reached = {r: {} for r in range(len(rungs))}  # trial -> its best so far when it reached the rung
    trial, nxt = list(range(min(slots, n))), min(slots, n)
    for t in trial:
        status[t] = "running"
    while any(t >= 0 for t in trial):
        arrived = []
        for i, t in enumerate(trial):
            if t < 0:
                continue
            epochs[t] += 1
            v = curves[t, epochs[t] - 1]
            if diverged.get(t) == epochs[t]:  # its training loss went non-finite in this epoch
                status[t] = "nan"
                arrived.append((i, t, None))
                continue
            best[t] = min(best[t], v if np.isfinite(v) else np.inf)  # non-finite ranks last
            if epochs[t] in rungs and rungs.index(epochs[t]) >= brackets[t]:
                reached[rungs.index(epochs[t])][t] = best[t]
                arrived.append((i, t, rungs.index(epochs[t])))
        free = []
        for i, t, r in arrived:
            peers = {j: v for j, v in reached[r].items() if brackets[j] == brackets[t]} if r is not None else {}
            if r is None:
                free.append(i)
            elif r == len(rungs) - 1:
                status[t] = "finished"
                free.append(i)
            elif sum(v < best[t] or (v == best[t] and j < t) for j, v in peers.items()) >= max(len(peers) // eta, 1):
                status[t] = "pruned"
                free.append(i)
        for i in sorted(free):
            trial[i] = nxt if nxt < n else -1
            if nxt < n:
                status[nxt] = "running"
                nxt += 1
    return status, epochs


@pytest.mark.parametrize("schedule", [jaxnn.SuccessiveHalving(1, 9, 3), jaxnn.Hyperband(1, 9, 3)])
def test_in_program_halving_matches_a_numpy_reference(schedule):
    result = run(schedule, space={**SPACE, "learning_rate": jaxnn.space.loguniform(1e-3, 3.0)})
    rows = sorted(result.trials, key=lambda r: r["id"])
    diverged = {r["id"]: r["epochs"] for r in rows if r["status"] == "nan"}
    status, epochs = reference(result.curves, list(schedule.rungs()), 3, 4, schedule.brackets(20), diverged)
    assert [r["status"] for r in rows] == status
    assert [r["epochs"] for r in rows] == epochs
    assert {"finished", "pruned", "nan"} <= set(status)
    finished = [r for r in result.trials if r["status"] == "finished"]
    assert result.trials[0]["id"] == min(finished, key=lambda r: r["score"])["id"]  # best first
    assert result.best_config == result.trials[0]["config"]


def test_hyperband_brackets_follow_hyperbands_budgets():
    brackets = jaxnn.Hyperband(1, 27, 3).brackets(49)
    assert np.bincount(brackets).tolist() == [27, 12, 6, 4]  # Hyperband's n for s = 3, 2, 1, 0
    assert np.bincount(jaxnn.Hyperband(1, 27, 3).brackets(10)).sum() == 10
    assert jaxnn.SuccessiveHalving(2, 20, 3).rungs() == (2, 6, 18, 20)


def test_replay_retrains_a_trial_alone_bitwise_and_same_key_same_search():
    first, again = run(optimizer="momentum"), run(optimizer="momentum")
    assert repr(first.trials) == repr(again.trials)  # NaN scores included
    winner = first.trials[0]["id"]
    alone = jaxnn.fit(**first.replay(winner))
    assert_bitwise_equal(alone.params, first.best_params)
    np.testing.assert_allclose(alone.history["val_loss"], first.curves[winner], rtol=1e-6)  # vmapped validation
    fewer_slots = run(slots=2)  # each configuration's values come from its own key
    by_id = lambda r: sorted((t["id"], t["config"]) for t in r.trials)
    assert by_id(fewer_slots) == by_id(first)
    assert by_id(run(key=4)) != by_id(first)


def test_a_masked_width_trains_as_the_narrow_network_alone():
    space = {"learning_rate": jaxnn.space.loguniform(0.01, 0.3), "width": jaxnn.space.choice([2, 4])}
    result = run(space=space, model=jaxnn.mlp([3, 8, 1]))
    row = result.trials[0]
    width = int(row["config"]["width"])
    kw = result.replay(row["id"])
    assert kw["model"].spec["sizes"] == [3, width, 1]
    alone = jaxnn.fit(**kw)
    for narrow, padded in zip(jax.tree.leaves(alone.params), jax.tree.leaves(result.best_params), strict=True):
        inside = tuple(slice(0, s) for s in narrow.shape)
        np.testing.assert_allclose(np.asarray(padded)[inside], narrow, rtol=1e-5, atol=1e-6)
        rest = np.asarray(padded).copy()
        rest[inside] = 0
        assert not rest.any()  # the units past the width stay zero
    full = jaxnn.predict(jaxnn.mlp([3, 8, 1]), result.best_params, X)  # the model given predicts the same
    np.testing.assert_allclose(full, jaxnn.predict(kw["model"], alone.params, X), rtol=1e-5, atol=1e-6)


def test_accuracy_is_ranked_higher_as_better_and_dropout_is_searched():
    y = (np.asarray(Y)[:, 0] > np.median(Y)).astype(np.int32)
    model = jaxnn.mlp([3, 8, 2], dropout=0.1)
    space = {"learning_rate": jaxnn.space.loguniform(0.01, 1.0), "dropout": jaxnn.space.choice([0.0, 0.5])}
    result = jaxnn.search(model, None, X, y, loss="softmax_cross_entropy", key=jax.random.key(0), space=space,
                          metrics=["accuracy"], monitor="val_accuracy", num_configs=9, slots=3,
                          schedule=jaxnn.SuccessiveHalving(1, 3, 3), progress=False)  # fmt: skip
    finished = [r for r in result.trials if r["status"] == "finished"]
    assert result.trials[0]["score"] == max(r["score"] for r in finished)
    kw = result.replay(result.trials[0]["id"])
    assert kw["model"].spec["dropout"] == [result.best_config["dropout"]]
    np.testing.assert_allclose(
        jaxnn.fit(**kw).history["val_accuracy"], result.curves[result.trials[0]["id"]], rtol=1e-6
    )


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"space": {}}, TypeError, "non-empty dict"),
        ({"space": {"learning_rate": (0.1, 1.0)}}, TypeError, "jaxnn.space"),
        ({"space": {"width": jaxnn.space.choice([4, 16])}}, ValueError, "largest width 16"),
        ({"space": {"width": jaxnn.space.uniform(2, 4)}}, ValueError, "choice of positive ints"),
        ({"space": {"momentum": jaxnn.space.uniform(0.0, 0.9)}, "optimizer": "sgd"}, ValueError, "momentum"),
        ({"space": {"dropout": jaxnn.space.uniform(0.0, 0.5)}}, ValueError, "dropout"),
        ({"schedule": "halving"}, TypeError, "SuccessiveHalving"),
        ({"num_configs": 0}, ValueError, "num_configs"),
        ({"slots": 1.5}, TypeError, "slots"),
        ({"monitor": "val_accuracy"}, ValueError, "not recorded"),
    ],
)
def test_bad_inputs_are_refused_before_any_work(change, error, match):
    with pytest.raises(error, match=match):
        run(**change)


def test_space_and_schedule_values_check_themselves():
    with pytest.raises(ValueError, match="low < high"):
        jaxnn.space.uniform(1.0, 0.5)
    with pytest.raises(ValueError, match="low > 0"):
        jaxnn.space.loguniform(0.0, 1.0)
    with pytest.raises(TypeError, match="finite number"):
        jaxnn.space.uniform(0.0, float("nan"))
    with pytest.raises(ValueError, match="must differ"):
        jaxnn.space.choice([1, 1])
    with pytest.raises(ValueError, match="eta"):
        jaxnn.SuccessiveHalving(eta=1)
    with pytest.raises(ValueError, match="at most max_epochs"):
        jaxnn.Hyperband(min_epochs=10, max_epochs=3)
    with pytest.raises(ValueError, match="width"):
        run(space={"width": jaxnn.space.choice([2])}, model=jaxnn.mlp([3, 1]))
