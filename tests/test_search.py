"""jaxnn.search: hyperparameter search inside the compiled program."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close

import jaxnn
from jaxnn import checkpoint
from jaxnn.tune import _results, _search

ROOT = Path(__file__).resolve().parents[1]
X, Y = jaxnn.make_regression(jax.random.key(0), n=200)
SPACE = {
    "learning_rate": jaxnn.space.loguniform(1e-3, 0.5),
    "momentum": jaxnn.space.uniform(0.0, 0.9),
}


def run(
    schedule=None, *, space=SPACE, model=None, num_configs=20, slots=4, key=3, refit=False, y=None,
    **kw,
):  # fmt: skip
    model = model or jaxnn.mlp([3, 8, 1])
    schedule = schedule or jaxnn.SuccessiveHalving(1, 9, 3)
    y = Y if y is None else y
    return jaxnn.search(model, None, X, y, loss="mse", key=jax.random.key(key), space=space, schedule=schedule,
                        num_configs=num_configs, slots=slots, progress=False, refit=refit, **kw)  # fmt: skip


def reference(
    curves: np.ndarray, rungs, eta: int, slots: int, brackets, diverged, buckets=None
) -> tuple[list, list]:
    """NumPy successive halving with slot refill, every slot advancing together: the
    rule jaxnn.search compiles, replayed from the monitored values it recorded (and
    the trials whose training loss went non-finite, which free their slot).
    ``buckets``: ``[(slots, trial ids), ...]``: each bucket's slots take its trials."""
    n = len(curves)
    status, epochs, best = ["pending"] * n, [0] * n, [np.inf] * n
    reached = {
        r: {} for r in range(len(rungs))
    }  # trial -> its best so far when it reached the rung
    # each slot's bucket, and each bucket's queue: its trials in id order
    queues = [list(q) for _, q in buckets or [(slots, range(n))]]
    owner = [b for b, (k, _) in enumerate(buckets or [(slots, ())]) for _ in range(k)]
    trial = [queues[b].pop(0) if queues[b] else -1 for b in owner]
    for t in trial:
        if t >= 0:
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
            peers = (
                {j: v for j, v in reached[r].items() if brackets[j] == brackets[t]}
                if r is not None
                else {}
            )
            if r is None:
                free.append(i)
            elif r == len(rungs) - 1:
                status[t] = "finished"
                free.append(i)
            elif sum(v < best[t] or (v == best[t] and j < t) for j, v in peers.items()) >= max(
                len(peers) // eta, 1
            ):
                status[t] = "pruned"
                free.append(i)
        for i in sorted(free):
            queue = queues[owner[i]]
            trial[i] = queue.pop(0) if queue else -1
            if trial[i] >= 0:
                status[trial[i]] = "running"
    return status, epochs


def neg_mse(predictions, targets, weights=None):
    return -jaxnn.losses.mse(predictions, targets, weights)


neg_mse.higher_is_better = True  # a metric of the user's that ranks higher as better


def test_a_small_halving_matches_the_numpy_reference_and_ranks_by_the_metrics_direction():
    schedule = jaxnn.SuccessiveHalving(1, 3, 3)
    result = run(schedule, num_configs=9, slots=3, metrics=[neg_mse], monitor="val_neg_mse")
    rows = sorted(result.trials, key=lambda r: r["id"])
    diverged = {r["id"]: r["epochs"] for r in rows if r["status"] == "nan"}
    status, epochs = reference(-result.curves, [1, 3], 3, 3, schedule.brackets(9), diverged)
    assert [r["status"] for r in rows] == status and [r["epochs"] for r in rows] == epochs
    finished = [r for r in result.trials if r["status"] == "finished"]
    assert result.trials[0]["id"] == max(finished, key=lambda r: r["score"])["id"]  # highest first


@pytest.mark.slow  # end to end; CI runs it
@pytest.mark.parametrize("schedule", [jaxnn.SuccessiveHalving(1, 9, 3), jaxnn.Hyperband(1, 9, 3)])
def test_in_program_halving_matches_a_numpy_reference(schedule):
    result = run(schedule, space={**SPACE, "learning_rate": jaxnn.space.loguniform(1e-3, 3.0)})
    rows = sorted(result.trials, key=lambda r: r["id"])
    diverged = {r["id"]: r["epochs"] for r in rows if r["status"] == "nan"}
    status, epochs = reference(
        result.curves, list(schedule.rungs()), 3, 4, schedule.brackets(20), diverged
    )
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


@pytest.mark.slow  # end to end; CI runs it
def test_replay_retrains_a_trial_alone_bitwise_and_same_key_same_search():
    first, again = run(optimizer="momentum"), run(optimizer="momentum")
    assert repr(first.trials) == repr(again.trials)  # NaN scores included
    winner = first.trials[0]["id"]
    alone = jaxnn.fit(**first.replay(winner))
    if jax.__version__.startswith(
        "0.10."
    ):  # its CPU backend rounds a vmapped matmul as the single one
        assert_bitwise_equal(alone.params, first.best_params)
    assert_close(
        alone.params, first.best_params, rtol=1e-5, atol=1e-7
    )  # jax 0.12 rounds them apart
    np.testing.assert_allclose(
        alone.history["val_loss"], first.curves[winner], rtol=1e-6
    )  # vmapped validation
    refit = run(optimizer="momentum", refit=True)
    assert refit.trials == first.trials or repr(refit.trials) == repr(first.trials)
    on_all_rows = jaxnn.fit(**{**first.replay(winner), "x": X, "y": Y, "validation": None})
    assert_bitwise_equal(on_all_rows.params, refit.best_params)  # scikit-learn's refit=True
    fewer_slots = run(slots=2)  # each configuration's values come from its own key
    by_id = lambda r: sorted((t["id"], t["config"]) for t in r.trials)
    assert by_id(fewer_slots) == by_id(first)
    assert by_id(run(key=4)) != by_id(first)
    assert jaxnn.SuccessiveHalving().sizes(3, 8, 1) == (3, 3, 3)  # no slot without a configuration
    # one read of three numbers per compiled chunk, nothing per step or per trial
    assert first.host["reads"] == 3 * first.host["chunks"] and 1 <= first.host["chunks"] <= 9


@pytest.mark.slow  # end to end; CI runs it
def test_a_masked_width_trains_as_the_narrow_network_alone():
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "width": jaxnn.space.choice([2, 4]),
    }
    result = run(space=space, model=jaxnn.mlp([3, 8, 1]))
    row = result.trials[0]
    width = int(row["config"]["width"])
    kw = result.replay(row["id"])
    assert kw["model"].spec["sizes"] == [3, width, 1]
    alone = jaxnn.fit(**kw)
    for narrow, padded in zip(
        jax.tree.leaves(alone.params), jax.tree.leaves(result.best_params), strict=True
    ):
        inside = tuple(slice(0, s) for s in narrow.shape)
        np.testing.assert_allclose(np.asarray(padded)[inside], narrow, rtol=1e-5, atol=1e-6)
        rest = np.asarray(padded).copy()
        rest[inside] = 0
        assert not rest.any()  # the units past the width stay zero
    full = jaxnn.predict(
        jaxnn.mlp([3, 8, 1]), result.best_params, X
    )  # the model given predicts the same
    np.testing.assert_allclose(
        full, jaxnn.predict(kw["model"], alone.params, X), rtol=1e-5, atol=1e-6
    )


def test_an_activation_search_trains_each_trial_as_the_network_of_its_activation():
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "activation": jaxnn.space.choice(["relu", "tanh", "gelu"]),
    }
    result = run(space=space, num_configs=6, schedule=jaxnn.SuccessiveHalving(1, 3, 3), refit=True)
    chosen = {row["config"]["activation"]: row["id"] for row in result.trials}
    assert len(chosen) >= 2 and set(chosen) <= {"relu", "tanh", "gelu"}
    for name, i in chosen.items():  # the program picks each slot's own activation
        kw = result.replay(i)
        assert kw["model"].spec["activation"] == name
        # it starts from the network's own initial weights (He for relu, Glorot for tanh)
        own = kw["model"].init(jaxnn.rng.stream(kw["key"], "init"))
        assert_close(kw["params"], own, rtol=1e-6, atol=1e-7)
        curve = jaxnn.fit(**kw).history["val_loss"]
        np.testing.assert_allclose(curve, result.curves[i][: len(curve)], rtol=1e-5)
    model, params = result.best_model()
    assert model.spec["activation"] == result.best_config["activation"]
    winner = jaxnn.fit(
        **{**result.replay(result.trials[0]["id"]), "x": X, "y": Y, "validation": None}
    )
    assert_close(params, winner.params, rtol=1e-5, atol=1e-7)  # the refit, as its own network
    with pytest.raises(ValueError, match="only 'activation' takes names"):
        run(space={"learning_rate": jaxnn.space.choice(["a", "b"])})
    with pytest.raises(ValueError, match="unknown activation 'swish2'"):
        run(space={"activation": jaxnn.space.choice(["relu", "swish2"])})


def test_a_depth_width_activation_search_trains_each_trial_as_its_own_network_alone():
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "depth": jaxnn.space.choice([1, 2, 3]),
        "width": jaxnn.space.choice([4, 8]),
        "activation": jaxnn.space.choice(["relu", "tanh"]),
    }
    deep = jaxnn.mlp([3, 8, 8, 8, 1])
    result = run(
        space=space,
        model=deep,
        num_configs=8,
        schedule=jaxnn.SuccessiveHalving(1, 3, 3),
        refit=True,
    )
    depths = set()
    for row in result.trials:  # every trial, whatever its depth, width and activation
        depth, width = row["config"]["depth"], row["config"]["width"]
        depths.add(depth)
        kw = result.replay(row["id"])
        assert kw["model"].spec["sizes"] == [3, *[width] * depth, 1]
        assert kw["model"].spec["activation"] == row["config"]["activation"]
        assert len(kw["params"]) == depth + 1  # its first hidden layers and the output layer
        curve = jaxnn.fit(**kw).history["val_loss"]
        np.testing.assert_allclose(curve, result.curves[row["id"]][: len(curve)], rtol=1e-5)
    assert len(depths) >= 2
    model, params = result.best_model()  # the winner as its own network, refit on every row
    winner = jaxnn.fit(
        **{**result.replay(result.trials[0]["id"]), "x": X, "y": Y, "validation": None}
    )
    assert_close(params, winner.params, rtol=1e-5, atol=1e-7)
    assert len(model.spec["sizes"]) == result.best_config["depth"] + 2
    # the model given, with the winner's values in its variables, predicts the same
    config = result.best_config
    searched = _search._model_for_search(deep, space)
    index = space["activation"].options.index(config["activation"])
    variables = {
        "params": result.best_params,
        "width": config["width"],
        "depth": config["depth"],
        "activation": index,
    }
    np.testing.assert_allclose(
        jaxnn.predict(searched, variables, X), jaxnn.predict(model, params, X), rtol=1e-5, atol=1e-6
    )


def test_results_read_like_the_space_and_best_model_is_the_winner_alone():
    space = {"learning_rate": jaxnn.space.choice([0.1, 0.03]), "width": jaxnn.space.choice([2, 4])}
    result = run(space=space, num_configs=4, schedule=jaxnn.SuccessiveHalving(1, 3, 3))
    for row in result.trials:  # each option as it was written
        assert type(row["config"]["width"]) is int and row["config"]["learning_rate"] in (0.1, 0.03)
    model, params = result.best_model()
    width = result.best_config["width"]
    assert model.spec["sizes"] == [3, width, 1]
    assert [a.shape for a in jax.tree.leaves(params)] == [(width,), (3, width), (1,), (width, 1)]
    np.testing.assert_allclose(
        jaxnn.predict(model, params, X),
        jaxnn.predict(jaxnn.mlp([3, 8, 1]), result.best_params, X),
        rtol=1e-6,
        atol=1e-7,
    )
    assert f"'width': {width}" in repr(result)
    drawn = run(space={"learning_rate": jaxnn.space.loguniform(0.01, 0.3)}, num_configs=3)
    rate = drawn.best_config["learning_rate"]  # the exact value; the summary shows 4 digits
    assert rate != float(f"{rate:.4g}") and f"'learning_rate': {float(f'{rate:.4g}')}}}" in repr(
        drawn
    )


def test_width_buckets_pad_at_most_twice_the_flops_and_share_the_slots():
    from jaxnn.tune import _buckets

    widths = np.array([16] * 20 + [32] * 20 + [64] * 20 + [128] * 21)
    made = lambda sizes, widths, slots, devices, batches=None: [
        (b.width, b.batch, b.slots)
        for b in _buckets.buckets(sizes, widths, batches, slots, devices)
    ]
    # one hidden layer: FLOPs ~ width
    assert made([64, 128, 10], widths, 9, 1) == [(32, None, 4), (128, None, 5)]
    assert made([64, 128, 128, 10], widths, 9, 1) == [
        (16, None, 2),
        (32, None, 2),
        (64, None, 2),
        (128, None, 3),
    ]  # ~ width^2
    assert made([64, 128, 10], widths, 9, 4) == [
        (32, None, 4),
        (128, None, 8),
    ]  # a multiple of the devices each
    assert made([64, 128, 10], np.array([16] + [128] * 80), 9, 1) == [(16, None, 1), (128, None, 9)]
    # a bucket per batch size, then per group of widths within it
    batches = np.array([32] * 40 + [128] * 41)
    assert made(None, None, 9, 1, batches) == [(None, 32, 4), (None, 128, 5)]
    assert made([64, 128, 10], widths, 9, 1, batches) == [(32, 32, 4), (128, 128, 5)]
    # batch 32 draws widths 64 and 128 (one group); 128 draws 16, 32 (a group) and one 64
    assert made([64, 128, 10], widths, 8, 1, batches[::-1]) == [
        (128, 32, 4),
        (32, 128, 4),
        (64, 128, 1),
    ]
    from jaxnn.tune._search import _bucket

    space = tuple({"width": jaxnn.space.choice([16, 32, 64, 128])}.items())
    small, large = jaxnn.mlp([64, 128, 10]), jaxnn.mlp([784, 1024, 1024, 10])
    assert (
        _bucket(small, space, jax.random.key(0), (81, 9, 32), None, None) == ()
    )  # 2.7M multiply-adds a step
    assert len(_bucket(small, space, jax.random.key(0), (81, 9, 32), None, True)) == 2
    assert len(_bucket(large, space, jax.random.key(0), (81, 9, 32), None, None)) == 4  # 545M
    assert _bucket(large, space, jax.random.key(0), (81, 9, 32), None, False) == ()
    with pytest.raises(TypeError, match="width_buckets must be None, True or False"):
        _bucket(small, space, jax.random.key(0), (81, 9, 32), None, "yes")
    for sizes in ([64, 128, 10], [3, 128, 128, 1]):
        bounds = [0, *(b.width for b in _buckets.buckets(sizes, widths, None, 9, 1))]
        for below, width in zip(
            bounds[:-1], bounds[1:], strict=True
        ):  # the options a bucket computes at width
            narrowest = min(w for w in (16, 32, 64, 128) if below < w <= width)
            assert _buckets.flops(sizes, width) <= 2 * _buckets.flops(sizes, narrowest)


@pytest.mark.slow  # end to end; CI runs it
def test_a_width_trial_with_dropout_draws_the_narrow_networks_masks():
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "width": jaxnn.space.choice([2, 4, 8]),
    }
    result = run(space=space, model=jaxnn.mlp([3, 8, 8, 1], dropout=0.3), num_configs=9)
    for width in (2, 4):  # the first units' masks are the narrow network's own
        row = max(
            (r for r in result.trials if r["config"]["width"] == width), key=lambda r: r["epochs"]
        )
        alone = jaxnn.fit(**result.replay(row["id"]))
        np.testing.assert_allclose(
            alone.history["val_loss"], result.curves[row["id"]][: row["epochs"]], rtol=1e-5
        )


@pytest.mark.slow  # end to end; CI runs it
def test_each_width_bucket_trains_its_trials_as_the_narrow_networks_alone():
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "width": jaxnn.space.choice([2, 4, 8]),
    }
    model = jaxnn.mlp([3, 8, 8, 1])  # FLOPs of widths 2, 4, 8: 12, 32, 96; three buckets
    schedule = jaxnn.SuccessiveHalving(1, 4, 2)
    result = run(space=space, model=model, num_configs=12, schedule=schedule, width_buckets=True)
    for width in (2, 4, 8):
        rows = [
            r
            for r in result.trials
            if r["config"]["width"] == width and r["status"] in ("finished", "pruned")
        ]
        row = max(rows, key=lambda r: (r["epochs"], -r["id"]))
        alone = jaxnn.fit(**result.replay(row["id"]))
        np.testing.assert_allclose(
            alone.history["val_loss"], result.curves[row["id"]][: row["epochs"]], rtol=1e-5
        )
    assert {r["status"] for r in result.trials} <= {"finished", "pruned"}  # every queue was taken


@pytest.mark.slow  # end to end; CI runs it
def test_a_batch_size_search_ranks_its_buckets_together_and_trains_each_at_its_own_size():
    from jaxnn.tune import _buckets

    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 0.3),
        "batch_size": jaxnn.space.choice([8, 16, 50]),
    }
    schedule = jaxnn.SuccessiveHalving(1, 4, 2)
    result = run(schedule, space=space, num_configs=12)
    rows = sorted(result.trials, key=lambda r: r["id"])
    sizes = np.array([r["config"]["batch_size"] for r in rows])
    buckets = [
        (b.slots, np.flatnonzero(sizes == b.batch).tolist())
        for b in _buckets.buckets(None, None, sizes, 4, 1)
    ]
    assert [len(q) for _, q in buckets] == [7, 2, 3] and [k for k, _ in buckets] == [2, 1, 1]
    diverged = {r["id"]: r["epochs"] for r in rows if r["status"] == "nan"}
    status, epochs = reference(
        result.curves, [1, 2, 4], 2, 4, schedule.brackets(12), diverged, buckets
    )
    assert [r["status"] for r in rows] == status and [r["epochs"] for r in rows] == epochs
    assert {"finished", "pruned"} <= set(status)
    for size in (8, 16, 50):  # each trial trains as fit at its batch size
        row = max((r for r in rows if r["config"]["batch_size"] == size), key=lambda r: r["epochs"])
        keywords = result.replay(row["id"])
        assert keywords["batch_size"] == size and type(row["config"]["batch_size"]) is int
        np.testing.assert_allclose(
            jaxnn.fit(**keywords).history["val_loss"],
            result.curves[row["id"]][: row["epochs"]],
            rtol=1e-6,
        )


@pytest.mark.slow  # end to end; CI runs it
def test_accuracy_is_ranked_higher_as_better_and_dropout_is_searched():
    y = (np.asarray(Y)[:, 0] > np.median(Y)).astype(np.int32)
    model = jaxnn.mlp([3, 8, 2], dropout=0.1)
    space = {
        "learning_rate": jaxnn.space.loguniform(0.01, 1.0),
        "dropout": jaxnn.space.choice([0.0, 0.5]),
    }
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
        (
            {"space": {"momentum": jaxnn.space.uniform(0.0, 0.9)}, "optimizer": "sgd"},
            ValueError,
            "momentum",
        ),
        ({"space": {"dropout": jaxnn.space.uniform(0.0, 0.5)}}, ValueError, "dropout"),
        ({"schedule": "halving"}, TypeError, "SuccessiveHalving"),
        ({"num_configs": 0}, ValueError, "num_configs"),
        ({"slots": 1.5}, TypeError, "slots"),
        ({"monitor": "val_accuracy"}, ValueError, "not recorded"),
        (
            {
                "space": {"width": jaxnn.space.choice([2, 4])},
                "model": jaxnn.mlp([3, 8, 1], init="normal"),
            },
            ValueError,
            "variance-scaling",
        ),
        (
            {
                "space": {"width": jaxnn.space.choice([2, 4])},
                "model": jaxnn.mlp([3, 8, 1], init=lambda k, s, d: 0),
            },
            ValueError,
            "variance-scaling",
        ),
        (
            {"space": {"h": jaxnn.space.uniform(0, 1), "g": jaxnn.space.uniform(0, 1)}},
            ValueError,
            r"space names \['h', 'g'\] are not .*optimizer sgd takes \['learning_rate', 'l2'\]",
        ),
        (
            {"schedule": jaxnn.PBT(), "early_stopping": jaxnn.EarlyStopping()},
            ValueError,
            "early_stopping",
        ),
        (
            {"schedule": jaxnn.PBT(), "space": {"width": jaxnn.space.choice([2, 4])}},
            ValueError,
            "cannot change a width",
        ),
        (
            {
                "schedule": jaxnn.PBT(),
                "space": {"depth": jaxnn.space.choice([1, 2])},
                "model": jaxnn.mlp([3, 8, 8, 1]),
            },
            ValueError,
            "cannot change a depth",
        ),
        (
            {"space": {"depth": jaxnn.space.choice([1, 2])}},
            ValueError,
            r"choice of ints from 1 to the model's 1",
        ),
        (
            {"space": {"depth": jaxnn.space.choice([1, 2])}, "model": jaxnn.mlp([3, 8, 4, 1])},
            ValueError,
            r"equal in width.*\[3, 8, 4, 1\]",
        ),
        (
            {
                "space": {"depth": jaxnn.space.choice([1, 2])},
                "model": jaxnn.mlp([3, 8, 8, 1], norm="batch"),
            },
            ValueError,
            "batch-norm",
        ),
        (
            {"schedule": jaxnn.PBT(), "space": {"batch_size": jaxnn.space.choice([8, 16])}},
            ValueError,
            "PBT cannot search batch_size",
        ),
        (
            {"space": {"batch_size": jaxnn.space.choice([8, 16])}, "batch_size": 8},
            ValueError,
            r"batch_size=8 and space\['batch_size'\]",
        ),
        (
            {"space": {"batch_size": jaxnn.space.uniform(8, 16)}},
            ValueError,
            "choice of positive ints",
        ),
        (
            {"space": {"batch_size": jaxnn.space.choice([8, 161])}},
            ValueError,
            r"each space\['batch_size'\] option must be in \[1, 160\], got 161",
        ),
        (
            {"num_configs": 2**26, "schedule": jaxnn.SuccessiveHalving(1, 2**20, 3)},
            ValueError,
            r"search of 67108864 configurations would hold about .* trials' table \(67108864 x 1048576 epochs\)",
        ),
        ({"schedule": jaxnn.PBT(), "slots": 3}, ValueError, "whole population"),
        ({"refit": "no"}, TypeError, "refit must be True or False"),
        ({"cv": 3, "validation": 0.2}, ValueError, "replaces validation"),
        ({"cv": 3, "schedule": jaxnn.PBT(), "slots": None}, ValueError, "cv=3 with PBT"),
        (
            {
                "space": {"learnig_rate": jaxnn.space.loguniform(1e-3, 1.0)},
                "model": jaxnn.mlp([3, 8, 1], dropout=0.1, norm="batch"),
            },
            ValueError,
            r"space names \['learnig_rate'\] are not",
        ),
        ({"sample_weight": np.eye(1, len(X))[0]}, ValueError, "rows have total weight 0"),
        (
            {"sample_weight": np.eye(1, len(X))[0], "cv": 3},
            ValueError,
            "fold 0's .* total weight 0",
        ),
    ],
)
def test_bad_inputs_are_refused_before_any_work(change, error, match):
    with pytest.raises(error, match=match):
        run(**change)


def test_a_search_or_fit_many_larger_than_the_device_is_refused_naming_its_parts(monkeypatch):
    from jaxnn import _checks

    monkeypatch.setattr(_checks, "device_memory", lambda: 10_000)  # bytes
    with pytest.raises(
        ValueError, match=r"200 configurations' initial params \(41 each\): .* GiB; 4 slots'"
    ):
        run(num_configs=200)
    with pytest.raises(
        ValueError, match=r"fit_many of 100 models would hold about .* device's 9.31e-06 GiB"
    ):
        jaxnn.fit_many(jaxnn.mlp([3, 8, 1]), None, X, Y, loss="mse", key=jax.random.key(0),
                       optimizer=jaxnn.optim.sgd([0.1] * 100), progress=False)  # fmt: skip


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


class Surrogate:
    """The PBT paper's toy: maximise Q(θ) = 1.2 - (θ0² + θ1²) by following the surrogate
    1.2 - θh² that hyperparameter ``h`` (0 or 1) picks one coordinate of. Training
    minimises the surrogate; inference gives -Q, the validation loss ranked."""

    def __call__(self, variables, x):
        theta = variables["params"]
        return jnp.broadcast_to((theta**2).sum() - 1.2, (x.shape[0], 1))

    def train_apply(self, variables, x, key):
        theta, h = variables["params"], variables["h"]
        picked = jnp.where(h < 0.5, theta[0], theta[1])
        return jnp.broadcast_to(picked**2 - 1.2, (x.shape[0], 1)), {}


def mean_loss(pred, y):
    return pred.mean()


ZEROS = np.zeros((4, 1), np.float32)
TOY = dict(model=jaxnn.Model(lambda k: {"params": jnp.array([0.9, 0.9])}, Surrogate()), params=None, x=ZEROS, y=ZEROS,
           loss=mean_loss, space={"h": jaxnn.space.choice([0, 1])}, num_configs=4, batch_size=4,
           optimizer=jaxnn.optim.sgd(0.1), validation=(ZEROS, ZEROS), progress=False)  # fmt: skip


def toy_search(schedule, key=0):
    return jaxnn.search(**TOY, key=jax.random.key(key), schedule=schedule)


@pytest.mark.slow  # end to end; CI runs it
def test_pbt_solves_the_papers_toy_where_fixed_hyperparameters_cannot():
    pbt = toy_search(jaxnn.PBT(interval=2, fraction=0.25, resample=0.25, max_epochs=40))
    fixed = toy_search(jaxnn.PBT(interval=40, max_epochs=40))  # no exploit: each member keeps its h
    assert -pbt.trials[0]["score"] > 1.19  # Q near its maximum 1.2
    assert -fixed.trials[0]["score"] < 1.2 - 0.8  # one coordinate never moves from 0.9
    assert all(row["parent"] == -1 for row in fixed.trials) and len(fixed.trials) == 4
    copies = [row for row in pbt.trials if row["parent"] >= 0]
    assert len(pbt.trials) == 4 + 19 and len(copies) == 19  # one replaced at each of 19 exploits
    by_id = {row["id"]: row for row in pbt.trials}
    for row in copies:  # a copy starts from its parent's curve and trains on
        parent = by_id[row["parent"]]
        assert row["id"] > row["parent"] and parent["status"] in ("pruned", "finished")
    statuses = sorted(row["status"] for row in pbt.trials)
    assert statuses.count("finished") == 4 and statuses.count("pruned") == 19
    with pytest.raises(ValueError, match="continued trial"):
        pbt.replay(copies[0]["id"])
    assert repr(toy_search(jaxnn.PBT(interval=2, max_epochs=40)).trials) == repr(
        toy_search(jaxnn.PBT(interval=2, max_epochs=40)).trials
    )


@pytest.mark.slow  # end to end; CI runs it
def test_a_masked_width_starts_from_the_narrow_networks_own_distribution():
    space = {"learning_rate": jaxnn.space.loguniform(0.01, 0.1), "width": jaxnn.space.choice([4])}
    result = run(jaxnn.SuccessiveHalving(1, 1, 3), space=space, model=jaxnn.mlp([3, 64, 64, 1]), num_configs=64,
                 slots=64)  # fmt: skip
    starts = [result.replay(i)["params"] for i in range(64)]
    narrow = [jaxnn.mlp([3, 4, 4, 1]).init(k) for k in jax.random.split(jax.random.key(9), 64)]
    for layer in range(
        3
    ):  # He normal in the hidden layers (fan_in 3, then 4), Glorot at the output
        drawn = np.concatenate([np.ravel(p[layer]["w"]) for p in starts])
        own = np.concatenate([np.ravel(p[layer]["w"]) for p in narrow])
        assert drawn.size == own.size
        np.testing.assert_allclose(drawn.std(), own.std(), rtol=0.15)


# the scripts' --search ------------------------------------------------------------------


@pytest.mark.slow  # end to end; CI runs it
def test_a_script_searches_then_trains_the_winner_into_its_run_folder(tmp_path, capsys):
    from test_experiments import run_script

    config = {
        "search_space": {
            "learning_rate": ["loguniform", 0.01, 1.0],
            "width": ["choice", [8, 16]],
            "batch_size": ["choice", [8, 16]],
        }
    }
    (tmp_path / "cfg").mkdir()
    base = run_script(
        "classify_iris", ["--epochs", "3", "--out", str(tmp_path / "cfg"), "--no-progress"]
    ).config
    saved = {**json.loads((tmp_path / "cfg" / "config.json").read_text()), **config, "hidden": [16]}
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(saved))
    result = run_script("classify_iris", ["--from-run", str(tmp_path / "cfg"), "--search", "9", "--out",
                                          str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "trials.csv",
        "search.png",
        "search.json",
        "config.json",
        "summary.json",
        "metrics.csv",
    } <= files
    rows = (tmp_path / "run" / "trials.csv").read_text().splitlines()
    assert (
        rows[0] == "id,status,rung,epochs,val_accuracy,parent,batch_size,learning_rate,width"
        and len(rows) == 10
    )
    found = json.loads((tmp_path / "run" / "search.json").read_text())
    assert result.config.learning_rate == pytest.approx(found["best_config"]["learning_rate"])
    assert result.config.hidden == (int(found["best_config"]["width"]),) and base.hidden == (32,)
    assert result.config.batch_size == found["best_config"]["batch_size"]
    assert found["schedule"] == {"kind": "halving", "min_epochs": 1, "eta": 3, "max_epochs": 3}
    assert "search: SearchResult(9 trials" in capsys.readouterr().out


def test_the_search_figure_tells_the_trials_apart_and_shows_the_finishers():
    import matplotlib

    matplotlib.use("Agg")
    from jaxnn.experiment._searching import search_figure

    curves = np.full((4, 9), np.nan)
    curves[0], curves[1, :3] = np.linspace(0.30, 0.10, 9), [0.9, 0.8, 0.7]
    curves[2, :1], curves[3, :2] = [5.0], [0.5, np.nan]
    row = lambda i, status, epochs: dict(
        id=i, status=status, epochs=epochs, parent=-1, rung=0, score=0.0
    )
    trials = [row(0, "finished", 9), row(1, "pruned", 3), row(2, "pruned", 1), row(3, "nan", 2)]
    result = jaxnn.SearchResult({"learning_rate": 0.1}, None, trials, curves, "val_loss")
    fig = search_figure(result, rungs=(1, 3, 9))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["finished", "pruned at a rung", "winner: trial 0", "rungs (ranked here)"]
    assert ax.get_title() == "4 trials (1 finished, 1 diverged (not drawn))"
    low, high = ax.get_ylim()
    assert low < 0.10 and 0.30 < high < 0.9  # the finisher fills the height; the pruned run off
    assert sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":") == [1, 3]


@pytest.mark.parametrize(
    "field, match",
    [
        ({"search_space": {"momentum": ["uniform", 0, 1]}}, "not searched by the scripts"),
        ({"search_space": {"learning_rate": ["normal", 0, 1]}}, "kind one of"),
        ({"search_space": {"learning_rate": ["uniform", 1]}}, "takes 2 argument"),
        ({"search_space": {}}, "at least one of"),
        (
            {"search_space": {"width": ["uniform", 2, 8]}},
            r"width'\] must be \['choice', \[sizes\]\]",
        ),
        ({"search_space": {"width": ["choice", [4, 2.5]]}}, "of whole numbers >= 1"),
        ({"search_space": {"batch_size": ["uniform", 1, 8]}}, r"\['choice', \[sizes\]\]"),
        ({"search_schedule": {"kind": "grid"}}, "kind must be one of"),
        ({"search_schedule": {"kind": "halving", "eta": 1}}, "eta must be"),
        ({"search_schedule": {"kind": "pbt", "speed": 2}}, "search_schedule: .*speed"),
    ],
)
def test_a_bad_search_setting_is_refused_when_the_config_is_made(field, match):
    from test_experiments import load

    with pytest.raises(ValueError, match=match):
        dataclasses.replace(load("classify_iris").CONFIG, **field)


SPREAD = textwrap.dedent("""
    import json, jax, jaxnn, numpy as np
    x, y = jaxnn.make_regression(jax.random.key(0), n=200)
    space = {"learning_rate": jaxnn.space.loguniform(1e-3, 0.5), "width": jaxnn.space.choice([2, 8])}
    kw = dict(loss="mse", key=jax.random.key(3), space=space, schedule=jaxnn.SuccessiveHalving(1, 9, 3),
              num_configs=20, slots=8, progress=False, width_buckets=True)  # two buckets of 4 slots
    spread, one = (jaxnn.search(jaxnn.mlp([3, 8, 1]), None, x, y, devices=d, **kw) for d in (None, 1))
    rows = lambda r: [[t["id"], t["status"], t["epochs"], t["score"]] for t in sorted(r.trials, key=lambda t: t["id"])]
    params = lambda r: [np.asarray(a).tolist() for a in jax.tree.leaves(r.best_params)]
    print(json.dumps({"devices": jax.device_count(), "trials": [rows(r) for r in (spread, one)],
                      "params": [params(r) for r in (spread, one)]}))
""")


@pytest.mark.slow  # a subprocess with 4 virtual devices
def test_the_slots_split_over_devices_give_the_same_search():
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", SPREAD], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["devices"] == 4
    (spread, one) = r["trials"]
    assert [t[:3] for t in spread] == [
        t[:3] for t in one
    ]  # each bucket's 4 slots over 4 devices, then on one
    np.testing.assert_allclose([t[3] for t in spread], [t[3] for t in one], rtol=1e-5)
    assert_close(r["params"][0], r["params"][1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # end to end; CI runs it
def test_cv_scores_a_trial_by_the_mean_over_its_folds():
    result = run(jaxnn.SuccessiveHalving(1, 3, 3), num_configs=6, slots=3, cv=3)
    winner = result.trials[0]
    perm = np.asarray(
        jax.random.permutation(jaxnn.rng.stream(jax.random.key(3), "validation"), 200)
    )
    parts = np.array_split(
        perm, 3
    )  # 67, 67, 66 rows: the last fold's sets padded with a row of weight 0
    curves = []
    for f in range(3):
        train, val = np.concatenate(parts[:f] + parts[f + 1 :]), parts[f]
        tw, vw = np.ones(134, np.float32), np.ones(67, np.float32)
        if len(train) < 134:
            train, tw[-1] = np.append(train, train[0]), 0.0
        if len(val) < 67:
            val, vw[-1] = np.append(val, val[0]), 0.0
        kw = {**result.replay(winner["id"]), "x": X[train], "y": Y[train], "sample_weight": tw,
              "validation": (X[val], Y[val], vw)}  # fmt: skip
        curves.append(jaxnn.fit(**kw).history["val_loss"])
    np.testing.assert_allclose(np.mean(curves, axis=0), result.curves[winner["id"]], rtol=1e-5)
    # each fold's curve, as that fold's fit alone gives it
    np.testing.assert_allclose(result.fold_curves[winner["id"]].T, curves, rtol=1e-5)
    with pytest.raises(ValueError, match="replaces validation"):
        run(cv=3, validation=(X, Y))
    # the same folds given, as scikit-learn's cv= gives them: the same search
    folds = [(np.concatenate(parts[:f] + parts[f + 1 :]), parts[f]) for f in range(3)]
    given = run(jaxnn.SuccessiveHalving(1, 3, 3), num_configs=6, slots=3, cv=folds)
    np.testing.assert_array_equal(given.curves, result.curves)
    assert given.trials == result.trials


@pytest.mark.parametrize(
    "cv, match",
    [
        ([(np.arange(100), np.arange(100, 200))], "k >= 2"),
        ([(np.arange(150), np.arange(100, 200))] * 2, "holds out rows it trains on"),
        ([(np.arange(100), np.arange(100, 201))] * 2, r"distinct indices in \[0, 200\)"),
        ([(np.arange(100), np.zeros(0, int))] * 2, "non-empty 1-D array of row indices"),
        ([(np.arange(100),)] * 2, r"a \(train, held_out\) pair"),
        ("5", "a number of folds or a list"),
    ],
)
def test_given_folds_are_checked(cv, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run(cv=cv, num_configs=3)


def test_a_listed_space_gives_configuration_i_its_ith_values():
    rates, widths = [0.1, 0.02, 0.1, 0.3], [8, 2, 4, 8]
    space = {"learning_rate": jaxnn.space.listed(rates), "width": jaxnn.space.listed(widths)}
    result = run(space=space, num_configs=4, slots=2)
    got = {t["id"]: t["config"] for t in result.trials}
    assert got == {
        i: {"learning_rate": r, "width": w}
        for i, (r, w) in enumerate(zip(rates, widths, strict=True))
    }
    assert jaxnn.space.listed(widths).options == (2, 4, 8)
    with pytest.raises(ValueError, match="expected num_configs=5 values each"):
        run(space=space, num_configs=5)


KILLED = textwrap.dedent("""
    import sys, jax, jaxnn
    sys.path.insert(0, "tests")
    from test_search import killable_search
    killable_search(sys.argv[1])
""")


def killable_search(folder, resume=None):
    x, y = jaxnn.make_regression(jax.random.key(0), n=400)
    space = {
        "learning_rate": jaxnn.space.loguniform(1e-3, 0.5),
        "width": jaxnn.space.choice([2, 8]),
    }
    return jaxnn.search(jaxnn.mlp([3, 8, 1]), None, x, y, loss="mse", key=jax.random.key(3), space=space,
                        schedule=jaxnn.SuccessiveHalving(1, 27, 3), num_configs=40, slots=4, progress=False,
                        refit=False, checkpoints=jaxnn.Checkpoints(folder, every=1), resume=resume)  # fmt: skip


def test_a_search_checkpoint_folder_is_its_own_and_a_bad_log_dir_fails_first(tmp_path, monkeypatch):
    small = dict(num_configs=2, schedule=jaxnn.SuccessiveHalving(1, 1, 3))
    run(checkpoints=jaxnn.Checkpoints(tmp_path / "a"), **small)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    for named in ("a", tmp_path / "link"):  # the same folder, named relatively or by a link
        again = run(checkpoints=jaxnn.Checkpoints(tmp_path / "a"), resume=named, **small)
        assert again.best_config is not None
    fitted = tmp_path / "fit"
    model = jaxnn.mlp([3, 8, 1])
    jaxnn.fit(model, model.init(jax.random.key(0)), X, Y, loss="mse", key=jax.random.key(0), epochs=1,
              progress=False, checkpoints=jaxnn.Checkpoints(fitted))  # fmt: skip
    with pytest.raises(
        checkpoint.CheckpointError, match=r"must not mix with: epoch-0+1\.jaxnn \(run"
    ):
        run(checkpoints=jaxnn.Checkpoints(fitted), **small)
    (tmp_path / "file").write_text("")
    calls = []
    monkeypatch.setattr(jaxnn.tune._program, "run_chunk", lambda *a: calls.append(a))
    with pytest.raises(NotADirectoryError, match="file/logs"):
        run(log_dir=tmp_path / "file" / "logs", **small)
    assert not calls  # refused before any training


def test_a_search_honours_every_checkpoints_field_or_refuses_it(tmp_path):
    small = dict(num_configs=4, slots=2, schedule=jaxnn.SuccessiveHalving(1, 3, 3))
    saved = jaxnn.Checkpoints(tmp_path / "a", every=1, keep=2, metadata={"who": "me"}, run_id="r7")
    first = run(checkpoints=saved, **small)
    files = sorted((tmp_path / "a").glob("*.jaxnn"))
    assert [f.name[:7] for f in files] == ["search-"] * 2  # the newest two of more chunks
    assert first.host["chunks"] > 2
    meta = checkpoint.read_metadata(files[-1])
    assert (meta["run_id"], meta["config"], meta["epoch"]) == (
        "r7",
        {"who": "me"},
        first.host["chunks"],
    )
    assert checkpoint.latest(tmp_path / "a") == files[-1]
    with pytest.raises(ValueError, match="belongs to run r7, not checkpoints.run_id"):
        run(checkpoints=dataclasses.replace(saved, run_id="r8"), resume=tmp_path / "a", **small)
    with pytest.raises(ValueError, match="every_steps .*set checkpoints.every instead"):
        run(checkpoints=jaxnn.Checkpoints(tmp_path / "b", every_steps=5), **small)
    assert not (tmp_path / "b").exists()
    again = run(checkpoints=dataclasses.replace(saved, overwrite=True), **small)  # a new start
    assert repr(again.trials) == repr(first.trials)
    assert len(list((tmp_path / "a").glob("*.jaxnn"))) == 2


def test_a_resume_is_refused_for_other_data_or_settings_and_names_a_callable_loss_by_its_code(
    tmp_path,
):
    small = dict(num_configs=2, schedule=jaxnn.SuccessiveHalving(1, 1, 3))
    saved = jaxnn.Checkpoints(tmp_path / "a")
    run(checkpoints=saved, **small)
    for change in ({"y": Y + 1.0}, {"shuffle": False}, {"tuning": jaxnn.Tuning(epochs_per_call=1)},
                   {"sample_weight": np.ones(len(X))}):  # fmt: skip
        with pytest.raises(ValueError, match="holds another search"):
            run(checkpoints=saved, resume=tmp_path / "a", **small, **change)
    assert run(checkpoints=saved, resume=tmp_path / "a", **small).best_config is not None

    def mine(p, t, w=None):
        return jaxnn.losses.mse(p, t, w)

    named = _results._name(mine)
    assert named.startswith(f"{mine.__module__}.{mine.__qualname__}:") and " at 0x" not in named
    assert _results._name(lambda p, t: 0) != _results._name(lambda p, t: 1)  # by their code


@pytest.mark.parametrize(
    "field, forged", [("trial", 99), ("status", 9), ("champion_id", -5), ("epochs", 10**6)]
)
def test_a_forged_search_checkpoint_is_refused_not_looped_on(tmp_path, monkeypatch, field, forged):
    small = dict(num_configs=2, schedule=jaxnn.SuccessiveHalving(1, 1, 3))
    saved, real_save = [], checkpoint.save
    monkeypatch.setattr(
        checkpoint, "save", lambda p, tree, metadata: saved.append((p, tree, metadata))
    )
    run(checkpoints=jaxnn.Checkpoints(tmp_path), **small)
    path, tree, metadata = saved[-1]
    state = tree["state"]
    tree = {"state": state._replace(**{field: jnp.full_like(getattr(state, field), forged)})}
    real_save(path, tree, metadata=metadata)  # a file whose checksums hold, its table forged
    monkeypatch.undo()
    with pytest.raises(
        checkpoint.CheckpointError, match=f"the search's {field} holds values outside"
    ):
        run(checkpoints=jaxnn.Checkpoints(tmp_path), resume=tmp_path, **small)


@pytest.mark.slow  # a subprocess killed mid-search
def test_a_search_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    folder = tmp_path / "killed"
    with open(tmp_path / "stderr", "wb") as err:
        child = subprocess.Popen([sys.executable, "-c", KILLED, str(folder)], cwd=ROOT, stderr=err)
        deadline = time.monotonic() + 240
        while (
            not any(folder.glob("search-*.jaxnn"))
            and child.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        time.sleep(0.1)
        assert child.poll() is None, (
            f"the search ended before it could be killed: {(tmp_path / 'stderr').read_text()}"
        )
        child.send_signal(signal.SIGKILL)
        child.wait()
    resumed = killable_search(tmp_path / "resumed", resume=folder)
    straight = killable_search(tmp_path / "straight")
    assert repr(resumed.trials) == repr(straight.trials)
    assert_bitwise_equal(resumed.best_params, straight.best_params)
    np.testing.assert_array_equal(resumed.curves, straight.curves)
    with pytest.raises(checkpoint.CheckpointError, match=r"this run's chunk \d+, past chunk 0"):
        killable_search(tmp_path / "straight")  # a finished search's folder is not overwritten
    with pytest.raises(ValueError, match="holds another search"):
        run(checkpoints=None, resume=folder)  # other settings


@pytest.mark.slow  # end to end; CI runs it
def test_tensorboard_holds_a_run_per_trial_with_its_lineage(tmp_path):
    pbt = toy_search(
        jaxnn.PBT(interval=4, fraction=0.25, max_epochs=8)
    )  # settles the shapes, then with logs
    logged = jaxnn.search(
        **TOY, key=jax.random.key(0), schedule=jaxnn.PBT(4, 0.25, max_epochs=8), log_dir=tmp_path
    )
    assert repr(logged.trials) == repr(pbt.trials)
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == [f"trial-{i:03d}" for i in range(len(pbt.trials))]
    copy = next(row for row in pbt.trials if row["parent"] >= 0)
    hparams = jaxnn.logs.read_hparams(tmp_path / f"trial-{copy['id']:03d}")
    assert (
        hparams["parent"] == copy["parent"]
        and hparams["status"] == copy["status"]
        and hparams["h"] in (0.0, 1.0)
    )
    steps = [
        s for s, _ in jaxnn.logs.read_scalars(tmp_path / f"trial-{copy['id']:03d}")["val_loss"]
    ]
    assert steps == list(range(1, copy["epochs"] + 1))  # a copy's curve starts with its parent's


class Wave:
    """A triangle-wave toy: the best value of ``h`` moves (0 -> 1 -> 0 over 40 updates,
    read from the step count ``t`` in the model state); each update adds
    ``1 - |h - best(t)|`` to ``theta``, the score (inference gives -theta as the loss)."""

    period = 40.0

    @classmethod
    def best(cls, t):
        return 1.0 - jnp.abs(2.0 * ((t / cls.period) % 1.0) - 1.0)

    def __call__(self, variables, x):
        return jnp.broadcast_to(-variables["params"].sum(), (x.shape[0], 1))

    def train_apply(self, variables, x, key):
        theta, h, t = variables["params"], variables["h"], variables["t"]
        reward = jax.lax.stop_gradient(1.0 - jnp.abs(h - self.best(t)))
        return jnp.broadcast_to(-reward * theta.sum(), (x.shape[0], 1)), {"t": t + 1.0}


@pytest.mark.slow  # end to end; CI runs it
def test_pbt_follows_a_moving_optimum_that_no_fixed_value_reaches():
    model = jaxnn.Model(lambda k: {"params": jnp.zeros(1), "t": jnp.float32(0.0)}, Wave())
    steps = np.arange(80)
    best_fixed = max(
        float(np.sum(1.0 - np.abs(h - Wave.best(steps)))) for h in np.linspace(0, 1, 101)
    )
    for seed in range(2):
        settings = {**TOY, "model": model, "space": {"h": jaxnn.space.uniform(0.0, 1.0)}, "num_configs": 8,
                    "optimizer": jaxnn.optim.sgd(1.0)}  # fmt: skip
        result = jaxnn.search(**settings, key=jax.random.key(seed),
                              schedule=jaxnn.PBT(interval=2, fraction=0.25, resample=0.25, max_epochs=80))  # fmt: skip
        assert -result.trials[0]["score"] > best_fixed + 3, (seed, result.trials[0], best_fixed)


@pytest.mark.slow  # end to end; CI runs it
def test_a_trials_own_early_stopping_is_its_own_status_and_frees_its_slot():
    stops = jaxnn.EarlyStopping(
        monitor="val_loss", patience=1, min_delta=10.0
    )  # no epoch after the first improves
    with pytest.warns(
        RuntimeWarning, match=r"stopped by its early stopping, .*better than any finished"
    ):
        result = run(early_stopping=stops)  # the exclusion said out loud
    statuses = {row["status"] for row in result.trials}
    assert statuses <= {"pruned", "stopped", "nan"} and "stopped" in statuses
    stopped = [row["epochs"] for row in result.trials if row["status"] == "stopped"]
    assert (
        set(stopped) <= {1, 2} and 2 in stopped
    )  # 1: a first value that is not finite never improves
    assert (
        sum(row["status"] != "pending" for row in result.trials) == 20
    )  # every configuration got a slot
    assert (
        result.best_config is None
        and result.best_params is None
        and "none finished" in repr(result)
    )


def test_a_stopped_trial_that_beat_the_winner_is_named():
    row = lambda i, status, score: {"id": i, "status": status, "score": score}
    trials = [row(0, "finished", 0.2), row(1, "stopped", 0.05), row(2, "pruned", 0.01)]
    assert _results.stopped_better(trials, 1.0)["id"] == 1  # lower is better
    assert _results.stopped_better(trials, -1.0) is None  # higher is better: 0.2 won
    assert (
        _results.stopped_better([row(0, "finished", 0.2), row(1, "stopped", float("nan"))], 1.0)
        is None
    )


def test_progress_is_a_bar_of_trials_decided_with_the_slots_and_the_rung(capsys):
    jaxnn.search(jaxnn.mlp([3, 8, 1]), None, X, Y, loss="mse", key=jax.random.key(3),
                 space={"learning_rate": jaxnn.space.loguniform(1e-3, 0.5)},
                 schedule=jaxnn.SuccessiveHalving(1, 3, 3), num_configs=6, slots=2, refit=False)  # fmt: skip
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "6/6 [" in err and "trial" in err and "slots=0, rung=1 of 0-1" in err
