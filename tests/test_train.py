import dataclasses
import functools

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest
from helpers import CompileCounter, assert_bitwise_equal, assert_close, expect_rejected

import jaxnn
from jaxnn import losses, metrics

matplotlib.use("Agg")

SEED_NET = dict(sizes=[3, 4, 4, 1], output_activation="sigmoid")


@pytest.fixture(scope="module")
def seed_data():
    x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
    return jaxnn.train_test_split(jax.random.key(1), x, y, 0.2)


def seed_model():
    return jaxnn.mlp(SEED_NET["sizes"], output_activation=SEED_NET["output_activation"])


def quick_fit(x, y, **kw):
    model = kw.pop("model", None) or seed_model()
    params = kw.pop("params", None) or model.init(jax.random.key(2))
    kw.setdefault("loss", "mse")
    kw.setdefault("key", jax.random.key(3))
    kw.setdefault("progress", False)
    return jaxnn.fit(model, params, x, y, **kw)


def test_converges_on_the_seed_regression_and_beats_a_line(seed_data):
    xtr, xte, ytr, yte = seed_data
    linear = float(jaxnn.losses.rmse(jaxnn.linear_regression(xtr, ytr)(xte), yte))
    model = seed_model()
    r = quick_fit(
        xtr, ytr, model=model, loss="rmse", optimizer=jaxnn.optim.sgd(0.1), batch_size=1, epochs=40
    )
    test_rmse = float(jaxnn.losses.rmse(jaxnn.predict(model, r.params, xte), yte))
    assert test_rmse < 0.8 * linear, (test_rmse, linear)
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert (
        r.epochs_run == 40
        and r.stop_reason == jaxnn.Stop.COMPLETED
        and int(r.state.step) == 40 * 800
    )


def test_classifies_a_bundled_dataset():
    ds = jaxnn.load_dataset("iris")
    xtr, xte, ytr, yte = jaxnn.train_test_split(jax.random.key(0), ds.x, ds.y, 0.3)
    xtr, xte = jaxnn.standardize(xtr, xte)
    model = jaxnn.mlp([4, 16, 3])
    r = quick_fit(
        xtr,
        ytr,
        model=model,
        loss="softmax_cross_entropy",
        optimizer=jaxnn.optim.adam(0.01),
        batch_size=16,
        epochs=60,
        validation=(xte, yte),
        metrics=["accuracy"],
    )
    assert r.history["val_accuracy"][-1] >= 0.9  # iris: a small MLP reaches 0.9+ held-out accuracy
    assert jaxnn.evaluate(
        model, r.params, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"]
    )["accuracy"] == pytest.approx(float(r.history["val_accuracy"][-1]))


def test_padded_last_batch_gives_the_unpadded_gradient(key):
    model = seed_model()
    params = model.init(key)
    x, y = jaxnn.make_regression(key, n=7)
    tx = optax.sgd(0.1)
    step = jaxnn.make_train_step(model.apply, "mse", tx)
    state = jaxnn.init_state(params, tx, key)
    pad_x = jnp.concatenate([x, jnp.repeat(x[:1], 3, axis=0)])
    pad_y = jnp.concatenate([y, jnp.repeat(y[:1], 3, axis=0)])
    mask = jnp.arange(10) < 7
    padded, m_pad = step(state, (pad_x, pad_y, mask.astype(jnp.float32)))
    plain, m_plain = step(state, (x, y))
    assert_close(padded.params, plain.params)
    assert_close(m_pad["loss"], m_plain["loss"])


def test_fit_with_a_remainder_equals_a_hand_loop(key):
    # 10 rows, batch 4: batches of 4, 4 and a last one of 2 (padded to 4, masked).
    x, y = jaxnn.make_regression(key, n=10)
    model = seed_model()
    params = model.init(key)
    r = quick_fit(
        x,
        y,
        model=model,
        params=params,
        batch_size=4,
        epochs=2,
        shuffle=False,
        optimizer=jaxnn.optim.sgd(0.5),
    )
    tx = optax.sgd(0.5)
    step = jax.jit(jaxnn.make_train_step(model.apply, "mse", tx))
    state = jaxnn.init_state(params, tx, key)
    for _ in range(2):
        for i in range(0, 10, 4):
            state, _ = step(state, (x[i : i + 4], y[i : i + 4]))
    assert_close(r.params, state.params)
    assert int(r.state.step) == 6
    dropped = quick_fit(
        x,
        y,
        model=model,
        params=params,
        batch_size=4,
        epochs=2,
        tuning=jaxnn.Tuning(drop_remainder=True),
    )
    assert int(dropped.state.step) == 4


def test_named_sgd_is_optax_sgd(seed_data):
    xtr, _, ytr, _ = seed_data
    a = quick_fit(xtr, ytr, optimizer=jaxnn.optim.sgd(0.05), batch_size=50, epochs=2)
    b = quick_fit(xtr, ytr, optimizer=optax.sgd(0.05), batch_size=50, epochs=2)
    assert_close(a.params, b.params)


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adamw"])
def test_other_optimizers_and_schedules_train(seed_data, optimizer):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(
        xtr,
        ytr,
        optimizer=getattr(jaxnn.optim, optimizer)(optax.linear_schedule(0.01, 0.001, 100)),
        batch_size=32,
        epochs=3,
    )
    assert r.history["loss"][-1] < r.history["loss"][0]


def test_deterministic_for_a_key_and_shuffled_by_it(seed_data):
    xtr, _, ytr, _ = seed_data
    a = quick_fit(xtr, ytr, batch_size=10, epochs=3, key=jax.random.key(7))
    b = quick_fit(xtr, ytr, batch_size=10, epochs=3, key=jax.random.key(7))
    c = quick_fit(xtr, ytr, batch_size=10, epochs=3, key=jax.random.key(8))
    assert_bitwise_equal(a.params, b.params)
    assert not np.array_equal(a.params[0]["w"], c.params[0]["w"])


def test_fusing_epochs_does_not_change_the_result(seed_data):
    xtr, _, ytr, _ = seed_data
    one = quick_fit(xtr, ytr, batch_size=10, epochs=5, tuning=jaxnn.Tuning(epochs_per_call=1))
    all_ = quick_fit(xtr, ytr, batch_size=10, epochs=5, tuning=jaxnn.Tuning(epochs_per_call=5))
    odd = quick_fit(
        xtr, ytr, batch_size=10, epochs=5, tuning=jaxnn.Tuning(epochs_per_call=3)
    )  # last call half empty
    assert_bitwise_equal(one.params, all_.params)
    assert_bitwise_equal(one.params, odd.params)
    np.testing.assert_array_equal(one.history["loss"], odd.history["loss"])


def test_no_recompilation_between_calls(seed_data):
    xtr, xte, ytr, yte = seed_data
    kw = dict(
        batch_size=16,
        epochs=4,
        tuning=jaxnn.Tuning(epochs_per_call=2),
        validation=(xte, yte),
        metrics=["r2"],
    )
    quick_fit(xtr, ytr, optimizer=jaxnn.optim.sgd(0.1), **kw)
    with CompileCounter() as c:
        quick_fit(xtr, ytr, optimizer=jaxnn.optim.sgd(0.1), **kw)
        quick_fit(xtr, ytr, optimizer=jaxnn.optim.sgd(0.3), **kw)  # the learning rate is data
        quick_fit(
            xtr, ytr, optimizer=jaxnn.optim.sgd(0.1), key=jax.random.key(9), **{**kw, "epochs": 6}
        )  # so are epochs
        quick_fit(
            xtr, ytr, model=seed_model(), optimizer=jaxnn.optim.sgd(0.1), **kw
        )  # an equal model, built again
    assert c.count == 0


@pytest.mark.parametrize("progress", [False, True], ids=["no-progress-bar", "progress-bar"])
def test_resuming_one_epoch_at_a_time_compiles_nothing_after_the_first_resume(seed_data, progress):
    # The loop of Optuna's pruning and of "train one more epoch": the epoch count is data.
    xtr, _, ytr, _ = seed_data
    kw = dict(batch_size=100, optimizer=jaxnn.optim.sgd(0.1), progress=progress)
    r = quick_fit(xtr, ytr, epochs=1, **kw)
    r = quick_fit(xtr, ytr, epochs=2, resume=r, **kw)
    with CompileCounter() as c:
        for e in range(3, 13):
            r = quick_fit(xtr, ytr, epochs=e, resume=r, **kw)
    assert c.count == 0 and r.epochs_run == 12
    assert_bitwise_equal(
        r.params, quick_fit(xtr, ytr, epochs=12, **{**kw, "progress": False}).params
    )


def test_an_epochs_bound_cut_short_by_early_stopping_costs_the_epochs_trained(seed_data):
    # The bound used to set the compiled scan's length: 2**31 - 1 epochs aborted XLA.
    xtr, xte, ytr, yte = seed_data
    r = quick_fit(
        xtr,
        ytr,
        batch_size=200,
        optimizer=jaxnn.optim.sgd(0.1),
        epochs=2**31 - 1,
        validation=(xte, yte),
        early_stopping=jaxnn.EarlyStopping(patience=2, min_delta=1.0),
    )
    assert (
        r.stop_reason == jaxnn.Stop.EARLY_STOPPING
        and r.epochs_run == 3
        and r.history["loss"].shape == (3,)
    )


@pytest.mark.parametrize("batch_size", [16, 37])  # 800 rows: full batches, and a masked last one
def test_gathering_per_epoch_equals_gathering_per_step(seed_data, batch_size):
    xtr, xte, ytr, yte = seed_data
    kw = dict(
        batch_size=batch_size, epochs=2, validation=(xte, yte), optimizer=jaxnn.optim.sgd(0.1)
    )
    step = quick_fit(xtr, ytr, tuning=jaxnn.Tuning(gather="step"), **kw)
    epoch = quick_fit(xtr, ytr, tuning=jaxnn.Tuning(gather="epoch"), **kw)
    assert_bitwise_equal(epoch.params, step.params)
    np.testing.assert_array_equal(epoch.history["val_loss"], step.history["val_loss"])


def test_history_and_validation_split(seed_data):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(xtr, ytr, batch_size=20, epochs=3, validation=0.25, metrics=["rmse", "r2"])
    assert set(r.history) == {"epoch", "loss", "val_loss", "val_rmse", "val_r2"}
    assert all(len(v) == 3 for v in r.history.values())
    assert int(r.state.step) == 3 * 30  # 600 training rows after the split, batches of 20
    no_val = quick_fit(xtr, ytr, batch_size=20, epochs=2, metrics=["rmse"])
    assert set(no_val.history) == {"epoch", "loss", "rmse"}  # metrics on the training data


def test_early_stopping_stops_restores_and_never_overshoots(key):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(
        np.float32
    )  # noise: validation loss soon stops improving
    xv = rng.standard_normal((64, 3)).astype(np.float32)
    yv = rng.standard_normal((64, 1)).astype(np.float32)
    model = jaxnn.mlp([3, 64, 64, 1])
    es = jaxnn.EarlyStopping(patience=3)
    r = quick_fit(
        x,
        y,
        model=model,
        batch_size=8,
        epochs=200,
        tuning=jaxnn.Tuning(epochs_per_call=200),
        optimizer=jaxnn.optim.adam(0.01),
        validation=(xv, yv),
        early_stopping=es,
    )
    assert r.stop_reason == jaxnn.Stop.EARLY_STOPPING and "did not improve" in r.message
    best = int(np.argmin(r.history["val_loss"]))
    assert r.epochs_run == best + 1 + 3  # stopped exactly `patience` epochs after the best one
    val = jaxnn.evaluate(model, r.params, xv, yv, loss="mse")["loss"]
    assert val == pytest.approx(
        float(r.history["val_loss"][best]), rel=1e-5
    )  # best params restored
    kept = quick_fit(
        x,
        y,
        model=model,
        batch_size=8,
        epochs=200,
        optimizer=jaxnn.optim.adam(0.01),
        validation=(xv, yv),
        early_stopping=dataclasses.replace(es, restore_best=False),
    )
    assert_bitwise_equal(kept.params, kept.state.params)


def test_nan_guard_stops_at_once_and_keeps_finite_params(seed_data):
    xtr, _, ytr, _ = seed_data
    model = jaxnn.mlp([3, 16, 1])  # a linear output: a huge learning rate diverges
    with pytest.warns(RuntimeWarning, match="non-finite.*learning rate") as caught:
        r = quick_fit(
            xtr, ytr, model=model, optimizer=jaxnn.optim.sgd(50.0), batch_size=10, epochs=20
        )
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert r.stop_reason == jaxnn.Stop.NON_FINITE_LOSS
    assert r.epochs_run < 20
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(r.params))
    stop_step = int(r.message.split("step ")[1].split(";")[0])
    assert int(r.state.step) in (stop_step - 1, stop_step - 2)  # the last finite step's params


@pytest.mark.filterwarnings("ignore:the loss became non-finite")
@pytest.mark.slow  # end to end; CI runs it
def test_a_run_that_diverges_late_is_rewound_alike_however_its_epochs_are_split(key):
    import optax

    x, y = jaxnn.make_regression(key, n=200)
    model = jaxnn.mlp([3, 16, 1])
    rising = optax.exponential_decay(
        0.05, 10, 1.5
    )  # the learning rate grows until the run diverges

    def run(epochs_per_call):
        return jaxnn.fit(
            model,
            model.init(key),
            x,
            y,
            loss="mse",
            optimizer=jaxnn.optim.sgd(rising),
            batch_size=32,
            epochs=40,
            key=key,
            progress=False,
            tuning=jaxnn.Tuning(epochs_per_call=epochs_per_call),
        )

    first, *others = [run(e) for e in (1, 3, 40)]
    assert first.stop_reason == jaxnn.Stop.NON_FINITE_LOSS and 2 < first.epochs_run < 40
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(first.params))
    for r in others:
        assert (r.epochs_run, r.message) == (first.epochs_run, first.message)
        assert_bitwise_equal(r.state, first.state)
        np.testing.assert_array_equal(r.history["loss"], first.history["loss"])
    # the run of one call (40 epochs per call) replayed without deleting the caller's key
    np.testing.assert_array_equal(
        jax.random.key_data(others[-1].state.key), jax.random.key_data(key)
    )


def test_single_row_batches_and_a_plain_apply_fn(key):
    x, y = jaxnn.make_regression(key, n=20)

    def apply_fn(params, x):  # any pure function of (params, x)
        return x @ params["w"] + params["b"][None, :]

    r = jaxnn.fit(
        apply_fn,
        {"w": jnp.zeros((3, 1)), "b": jnp.zeros(1)},
        x,
        y,
        loss="mse",
        batch_size=1,
        epochs=5,
        optimizer=jaxnn.optim.sgd(0.05),
        key=key,
        progress=False,
    )
    assert int(r.state.step) == 100
    assert r.history["loss"][-1] < r.history["loss"][0]


def test_callers_params_survive_the_donated_loop(seed_data):
    xtr, _, ytr, _ = seed_data
    model = seed_model()
    params = model.init(jax.random.key(0))
    before = jax.tree.map(np.asarray, params)
    quick_fit(xtr, ytr, model=model, params=params, epochs=2)
    assert_bitwise_equal(params, before)


def test_predict_and_evaluate(seed_data):
    _, xte, _, yte = seed_data
    model = seed_model()
    params = model.init(jax.random.key(0))
    assert_close(
        jaxnn.predict(model, params, xte, batch_size=7), model.apply(params, jnp.asarray(xte))
    )
    out = jaxnn.evaluate(model, params, xte, yte[:, 0], loss="mse", metrics=["rmse", "mae"])
    assert set(out) == {"loss", "rmse", "mae"}
    assert out["rmse"] == pytest.approx(np.sqrt(out["loss"]), rel=1e-5)


def test_progress_bar_and_plot(seed_data, capsys):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(xtr, ytr, epochs=4, progress=True, validation=0.2)
    assert "4/4" in capsys.readouterr().err
    fig = jaxnn.plot_history(r.history)
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss", "val_loss"]


BAD = [
    (lambda: dict(batch_size=0), ValueError, r"batch_size must be in \[1, 800\]"),
    (lambda: dict(batch_size=801), ValueError, r"batch_size must be in \[1, 800\]"),
    (lambda: dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (lambda: dict(epochs=0), ValueError, r"epochs must be in \[1, 2147483647\]"),
    (lambda: dict(optimizer=jaxnn.optim.sgd(-0.1)), ValueError, "finite number > 0"),
    (lambda: dict(optimizer=jaxnn.optim.sgd(float("nan"))), ValueError, "finite number > 0"),
    (lambda: dict(optimizer=jaxnn.optim.sgd("fast")), TypeError, "learning_rate must be a number"),
    (lambda: dict(optimizer="adagrad"), ValueError, "unknown optimizer 'adagrad'"),
    (
        lambda: dict(optimizer=jaxnn.optim.sgd([0.1, 0.2])),
        ValueError,
        "one value per model; fit trains one model",
    ),
    (lambda: dict(optimizer=jaxnn.optim.sgd(1e-50)), ValueError, "underflows to 0 in float32"),
    (
        lambda: dict(optimizer=jaxnn.optim.adam(1e-3, b1=2.0)),
        ValueError,
        r"b1 must be in \[0.0, 1.0\)",
    ),
    (
        lambda: dict(optimizer=jaxnn.optim.momentum(0.1, momentum=-0.5)),
        ValueError,
        "momentum must be a finite number",
    ),
    (lambda: dict(checkpoints=jaxnn.Checkpoints("")), ValueError, "checkpoints.dir is empty"),
    (lambda: dict(loss="cross_entropy"), ValueError, "unknown loss"),
    (lambda: dict(key=0), TypeError, "PRNG key"),
    (lambda: dict(validation=1.5), ValueError, r"validation fraction must be in \(0, 1\)"),
    (
        lambda: dict(validation=(np.ones((2, 4)), np.ones(2))),
        ValueError,
        "validation x has 4 features",
    ),
    (lambda: dict(metrics=["f1"]), ValueError, "unknown metric 'f1'"),
    (
        lambda: dict(early_stopping=jaxnn.EarlyStopping()),
        ValueError,
        "monitor='val_loss' is not recorded",
    ),
    (lambda: dict(tuning=jaxnn.Tuning(epochs_per_call=0)), ValueError, "epochs_per_call"),
    (
        lambda: dict(early_stopping=jaxnn.EarlyStopping("loss", best="all")),
        ValueError,
        "best must be 'significant' or 'any'",
    ),
    (
        lambda: dict(early_stopping=jaxnn.EarlyStopping("loss", reduce_lr=1.5)),
        ValueError,
        r"reduce_lr must be None or a factor",
    ),
    (
        lambda: dict(
            early_stopping=jaxnn.EarlyStopping("loss", reduce_lr=0.5), optimizer=optax.sgd(0.1)
        ),
        ValueError,
        "reduce_lr needs the learning rate in the optimizer state",
    ),
    (lambda: dict(sample_weight=np.ones(3)), ValueError, r"sample_weight must have shape \(800,\)"),
    (
        lambda: dict(sample_weight=-np.ones(800)),
        ValueError,
        "sample_weight must be finite and >= 0",
    ),
    (lambda: dict(sample_weight=np.zeros(800)), ValueError, "not all 0"),
    (
        lambda: dict(validation=(np.ones((2, 3)), np.ones(2), np.ones(3))),
        ValueError,
        r"validation weights must have shape",
    ),
]


@pytest.mark.parametrize(("kw", "err", "match"), BAD, ids=[m for _, _, m in BAD])
def test_bad_settings_raise_before_compiling(seed_data, kw, err, match):
    xtr, _, ytr, _ = seed_data
    model = seed_model()
    params = model.init(jax.random.key(2))
    expect_rejected(err, match, lambda: quick_fit(xtr, ytr, model=model, params=params, **kw()))


def test_bad_data_raises_before_compiling(seed_data):
    xtr = seed_data[0]
    model = jaxnn.mlp([3, 3])
    params = model.init(jax.random.key(0))
    fit = functools.partial(jaxnn.fit, model, params, key=jax.random.key(0), progress=False)
    bad_x = xtr.copy()
    bad_x[5, 2] = np.nan
    labels = np.zeros(800, np.int32)
    cases = [
        (lambda: fit(bad_x, labels, loss="softmax_cross_entropy"), ValueError, "row 5, column 2"),
        (
            lambda: fit(xtr, labels + 3, loss="softmax_cross_entropy"),
            ValueError,
            r"labels must lie in \[0, 3\)",
        ),
        (
            lambda: fit(xtr, labels.astype(np.float32), loss="softmax_cross_entropy"),
            ValueError,
            "integer class",
        ),
        (
            lambda: fit(xtr, np.tile([-3.0, 5, -1], (800, 1)), loss="softmax_cross_entropy"),
            ValueError,
            "row 0 is",
        ),
        (
            lambda: fit(xtr, np.full((800, 3), 0.5), loss="softmax_cross_entropy"),
            ValueError,
            "summing to 1",
        ),
        (
            lambda: fit(xtr, np.zeros((800, 2)), loss="mse"),
            ValueError,
            r"expected targets of shape \(n, 3\)",
        ),
        (
            lambda: fit(xtr, np.full((800, 3), 2.0), loss="binary_cross_entropy"),
            ValueError,
            r"targets in \[0, 1\]",
        ),
        (
            lambda: fit(xtr[:, :2], labels, loss="softmax_cross_entropy"),
            ValueError,
            "x has 2 features",
        ),
        (
            lambda: fit(xtr, labels[:10], loss="softmax_cross_entropy"),
            ValueError,
            "must have shape",
        ),
        (lambda: fit(xtr, None, loss="mse"), TypeError, "needs targets"),
        (lambda: fit(xtr, np.array(["a"] * 800), loss="mse"), TypeError, "numeric"),
    ]
    with CompileCounter() as c:
        for call, err, match in cases:
            with pytest.raises(err, match=match):
                call()
    assert c.count == 0


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1001, 65537])
def test_epoch_shuffle_is_a_permutation(n):
    from jaxnn._shuffle import shuffled_order

    order = np.asarray(shuffled_order(jax.random.key(n), n))
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    np.testing.assert_array_equal(order, np.asarray(shuffled_order(jax.random.key(n), n)))


def test_epoch_shuffle_looks_uniform():
    from jaxnn._shuffle import shuffled_order

    n, trials = 8, 2000
    orders = np.stack(
        [
            np.asarray(o)
            for o in jax.jit(jax.vmap(lambda k: shuffled_order(k, n)))(
                jax.random.split(jax.random.key(0), trials)
            )
        ]
    )
    counts = np.stack([(orders == v).sum(axis=0) for v in range(n)])  # value v at position p
    expected = trials / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 110  # 49 degrees of freedom: p < 1e-6 above 110
    assert len({tuple(o) for o in orders}) > 0.95 * trials  # almost never the same order twice


def test_device_arrays_train_like_numpy(seed_data):
    xtr, _, ytr, _ = seed_data
    a = quick_fit(xtr, ytr, batch_size=32, epochs=2, validation=0.1)
    b = quick_fit(jnp.asarray(xtr), jnp.asarray(ytr), batch_size=32, epochs=2, validation=0.1)
    assert_bitwise_equal(a.params, b.params)


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import (  # noqa: E402
    CHECKPOINTS,
    MODEL,
    PARAMS,
    K,
    X,
    Y,
    bad_dtypes,
    bad_input_test,
    bad_labels,
    bad_lrs,
    bad_ranks,
    case,
    expect,
    fit,
    huge_ints,
    nonfinite,
    of_dtype,
    option_test,
    poisoned,
)

# fit ----------------------------------------------------------------------------------


@case("fit", "rank")
def _(data, tmp):
    expect(ValueError, r"x must be 2-D \(samples, features\)", fit, x=np.ones(data.draw(bad_ranks)))


@case("fit", "length")
def _(data, tmp):
    n = data.draw(st.integers(1, 20).filter(lambda n: n != 10))
    outputs = data.draw(st.integers(3, 5))
    for y in (np.ones((n, 2)), np.ones((10, outputs))):
        expect(
            ValueError,
            r"y must have shape \(10,\)|y has shape .* expected targets of shape \(n, 2\)",
            fit,
            y=y,
        )


@case("fit", "nonfinite")
def _(data, tmp):
    value = data.draw(nonfinite)
    bad = [dict(layer) for layer in PARAMS]
    bad[1]["w"] = poisoned(data, bad[1]["w"], value)
    expect(
        ValueError,
        r"params\[1\]\['w'\] has non-finite values",
        jaxnn.fit,
        MODEL,
        bad,
        X,
        Y,
        loss="mse",
        key=K,
        batch_size=2,
        progress=False,
        checkpoints=jaxnn.Checkpoints(CHECKPOINTS),
    )
    for where in ("x", "y"):
        expect(
            ValueError,
            "non-finite value",
            fit,
            **{where: poisoned(data, {"x": X, "y": Y}[where], value)},
        )


@case("fit", "empty")
def _(data, tmp):
    expect(ValueError, "at least one row", fit, x=np.ones((0, 3)), y=np.ones((0, 2)))


@case("fit", "dtype")
def _(data, tmp):
    for where in ("x", "y"):
        expect(
            TypeError,
            "must be a numeric array",
            fit,
            **{where: of_dtype(data.draw(bad_dtypes), (10, 3 if where == "x" else 2))},
        )


@case("fit", "overflow")
def _(data, tmp):
    expect(ValueError, r"epochs must be in \[1, 2147483647\]", fit, epochs=data.draw(huge_ints))
    expect(
        ValueError,
        "outside the int32 range",
        fit,
        y=np.full(10, data.draw(huge_ints)),
        loss="softmax_cross_entropy",
    )


@case("fit", "labels")
def _(data, tmp):
    expect(
        ValueError,
        r"labels must lie in \[0, 2\)|needs integer class labels",
        fit,
        y=bad_labels(data, 2),
        loss="softmax_cross_entropy",
    )


@case("fit", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(11, 10**9)))
    expect(ValueError, r"batch_size must be in \[1, 10\]", fit, batch_size=size)


@case("fit", "learning_rate")
def _(data, tmp):
    lr = data.draw(bad_lrs)
    expect(
        ValueError,
        "learning_rate must be a finite number > 0",
        lambda: fit(optimizer=jaxnn.optim.sgd(lr)),
    )


@case("fit", "name")
def _(data, tmp):
    for field, known in (
        ("loss", losses.LOSSES),
        ("optimizer", jaxnn.optim.OPTIMIZERS),
        ("metrics", metrics.METRICS),
    ):
        name = data.draw(st.text(max_size=10).filter(lambda s, known=known: s not in known))
        noun = {"loss": "loss", "optimizer": "optimizer", "metrics": "metric"}[field]
        expect(
            ValueError,
            f"unknown {noun} .*; expected one of",
            fit,
            **{field: [name] if field == "metrics" else name},
        )


# predict and evaluate -----------------------------------------------------------------

predictors = st.sampled_from(["predict", "evaluate"])


def predict_or_evaluate(which, x, **kw):
    if which == "predict":
        return jaxnn.predict(MODEL, PARAMS, x, **kw)
    return jaxnn.evaluate(MODEL, PARAMS, x, np.ones((len(x), 2)), loss="mse", **kw)


@case("predict", "rank")
def _(data, tmp):
    expect(
        ValueError, r"x must be 2-D", jaxnn.predict, MODEL, PARAMS, np.ones(data.draw(bad_ranks))
    )


@case("predict", "length")
def _(data, tmp):
    features = data.draw(st.integers(1, 9).filter(lambda f: f != 3))
    expect(
        ValueError,
        "features but the first layer expects 3",
        predict_or_evaluate,
        data.draw(predictors),
        np.ones((4, features)),
    )


@case("predict", "nonfinite")
def _(data, tmp):
    expect(
        ValueError,
        "non-finite value",
        predict_or_evaluate,
        data.draw(predictors),
        poisoned(data, X, data.draw(nonfinite)),
    )


@case("predict", "empty")
def _(data, tmp):
    expect(
        ValueError, "at least one row", predict_or_evaluate, data.draw(predictors), np.ones((0, 3))
    )


@case("predict", "dtype")
def _(data, tmp):
    expect(
        TypeError,
        "must be a numeric array",
        predict_or_evaluate,
        data.draw(predictors),
        of_dtype(data.draw(bad_dtypes), (4, 3)),
    )


@case("predict", "batch_size")
def _(data, tmp):
    expect(
        ValueError,
        "batch_size must be >= 1",
        predict_or_evaluate,
        data.draw(predictors),
        X,
        batch_size=data.draw(st.integers(-5, 0)),
    )


# One home per option: each of fit's option values, wrong in type or range, is refused
# before anything compiles or is written (keep=1.5 and non-JSON metadata once failed
# only after training).
test_bad_input_gets_a_clear_error = bad_input_test("fit", "predict")
test_a_bad_option_gets_a_clear_error = option_test("fit")


@pytest.mark.slow  # end to end; CI runs it
def test_tensorboard_logs_hold_the_history_and_the_hyperparameters(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=80)
    model = jaxnn.mlp([3, 8, 1], dropout=0.1)
    kw = dict(
        loss="mse",
        key=jax.random.key(1),
        optimizer=jaxnn.optim.adam(0.01),
        batch_size=16,
        progress=False,
        validation=0.25,
        metrics=["rmse"],
        log_dir=tmp_path / "tb",
    )
    r = jaxnn.fit(
        model,
        model.init(jax.random.key(2)),
        x,
        y,
        epochs=3,
        tuning=jaxnn.Tuning(epochs_per_call=2),
        **kw,
    )
    scalars = jaxnn.logs.read_scalars(tmp_path / "tb")
    for name in ("loss", "val_loss", "val_rmse"):
        assert [s for s, _ in scalars[name]] == [1, 2, 3]
        np.testing.assert_allclose([v for _, v in scalars[name]], r.history[name], rtol=1e-6)
    assert [v for _, v in scalars["learning_rate"]] == pytest.approx([0.01] * 3)
    assert all(v > 0 for _, v in scalars["epoch_seconds"])
    hp = jaxnn.logs.read_hparams(tmp_path / "tb")
    assert (
        hp["optimizer"] == "adam"
        and hp["batch_size"] == 16
        and hp["learning_rate"] == pytest.approx(0.01)
    )
    kw["log_dir"], ck = tmp_path / "b", jaxnn.Checkpoints(tmp_path / "ck")
    jaxnn.fit(model, model.init(jax.random.key(2)), x, y, epochs=3, checkpoints=ck, **kw)
    jaxnn.fit(model, model.init(jax.random.key(2)), x, y, epochs=5, resume=tmp_path / "ck", **kw)
    assert [s for s, _ in jaxnn.logs.read_scalars(tmp_path / "b")["loss"]] == [
        1,
        2,
        3,
        4,
        5,
    ]  # resumed: appended


@pytest.mark.filterwarnings(
    "ignore:1 of 3 models stopped"
)  # the third diverges: its log stops there
@pytest.mark.slow  # end to end; CI runs it
def test_fit_many_logs_one_run_per_model_for_the_hparams_view(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=80)
    r = jaxnn.fit_many(
        jaxnn.mlp([3, 8, 1]),
        None,
        x,
        y,
        loss="mse",
        key=jax.random.key(1),
        epochs=2,
        progress=False,
        optimizer=jaxnn.optim.sgd([0.01, 0.1, 1e4]),
        log_dir=tmp_path,
    )
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["model-000", "model-001", "model-002"]
    for i, run in enumerate(runs):
        lr = jaxnn.logs.read_hparams(tmp_path / run)["learning_rate"]
        assert lr == pytest.approx(r.hyperparams["learning_rate"][i])
        logged = jaxnn.logs.read_scalars(tmp_path / run)["loss"]
        ran = np.isfinite(r.history["loss"][i])
        np.testing.assert_allclose([v for _, v in logged], r.history["loss"][i][ran], rtol=1e-6)


def _rule_stop(values, patience, min_delta, best_rule):
    """The epoch (1-based) at which EarlyStopping's rule stops on ``values`` (a loss), or None."""
    best, wait = np.inf, 0
    for epoch, v in enumerate(values, 1):
        improved = v < best - min_delta
        wait = 0 if improved else wait + 1
        if improved or (best_rule == "any" and v < best):
            best = v
        if wait >= patience:
            return epoch
    return None


@pytest.mark.parametrize("best", ["significant", "any"])
def test_early_stopping_best_rule_is_keras_or_sklearn(seed_data, best):
    xtr, _, ytr, _ = seed_data  # slow steady progress: each epoch improves a little
    es = jaxnn.EarlyStopping("loss", patience=3, min_delta=2e-4, best=best, restore_best=False)
    r = quick_fit(
        xtr, ytr, batch_size=100, epochs=300, optimizer=jaxnn.optim.sgd(0.05), early_stopping=es
    )
    free = quick_fit(xtr, ytr, batch_size=100, epochs=300, optimizer=jaxnn.optim.sgd(0.05))
    assert_bitwise_equal(r.history["loss"], free.history["loss"][: r.epochs_run])
    assert r.epochs_run == _rule_stop(free.history["loss"], 3, 2e-4, best)
    if best == "any":  # scikit-learn's rule stops well before Keras's on the same run
        assert r.epochs_run + 10 < (_rule_stop(free.history["loss"], 3, 2e-4, "significant") or 301)


def test_reduce_lr_on_plateau_then_stop_at_min_lr():
    x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((64, 1)).astype(np.float32)  # noise: plateaus soon
    es = jaxnn.EarlyStopping(
        "loss", patience=2, min_delta=1e-3, best="any", reduce_lr=0.5, min_lr=0.1 / 2**3
    )
    r = quick_fit(
        x,
        y,
        model=jaxnn.mlp([3, 8, 1]),
        batch_size=64,
        epochs=500,
        optimizer=jaxnn.optim.momentum(0.1),
        early_stopping=es,
    )
    assert r.stop_reason == jaxnn.Stop.EARLY_STOPPING
    # three plateaus halve the rate 0.1 -> 0.0125 (= min_lr); the fourth stops the run
    assert float(jaxnn._optim.learning_rate_of(r.state.opt_state)) == pytest.approx(0.0125)
    lr, wait, reductions, best, stopped = 0.1, 0, 0, np.inf, None
    for epoch, v in enumerate(r.history["loss"], 1):
        wait = 0 if v < best - 1e-3 else wait + 1
        best = min(best, v)
        if wait >= 2 and lr <= 0.0125 + 1e-9:
            stopped = epoch
            break
        if wait >= 2:
            lr, wait, reductions = lr * 0.5, 0, reductions + 1
    assert (stopped, reductions) == (r.epochs_run, 3)


def test_sample_weights_are_a_weighted_mean_and_repeat_rows(seed_data):
    xtr, xv, ytr, yv = seed_data
    x, y = xtr[:40], ytr[:40]
    w = np.r_[np.full(10, 2.0), np.ones(20), np.zeros(10)].astype(np.float32)
    rows = np.r_[np.arange(10), np.arange(30)]  # rows 0-9 twice, 10-29 once, 30-39 never
    kw = dict(batch_size=40, epochs=20, optimizer=jaxnn.optim.sgd(0.5), shuffle=False)
    weighted = quick_fit(x, y, sample_weight=w, **kw)
    repeated = quick_fit(x[rows], y[rows], **kw)
    assert_close(weighted.params, repeated.params, atol=1e-6)
    plain = quick_fit(x, y, **kw)
    assert not np.allclose(
        jax.tree.leaves(plain.params)[0], jax.tree.leaves(weighted.params)[0], atol=1e-4
    )
    # validation weights: the validation loss is their weighted mean
    wv = np.r_[np.zeros(100), np.ones(100)].astype(np.float32)
    r = quick_fit(x, y, sample_weight=w, validation=(xv, yv, wv), **kw)
    want = jaxnn.evaluate(seed_model(), r.params, xv[100:], yv[100:], loss="mse")["loss"]
    assert float(r.history["val_loss"][-1]) == pytest.approx(want, rel=1e-5)


def test_one_whole_batch_is_not_reshuffled(seed_data):
    xtr, _, ytr, _ = seed_data
    kw = dict(batch_size=len(xtr), epochs=5)
    assert_bitwise_equal(
        quick_fit(xtr, ytr, shuffle=True, **kw).params,
        quick_fit(xtr, ytr, shuffle=False, **kw).params,
    )


def test_a_resumed_fit_traces_the_optimizer_init_once_per_params_shapes(seed_data):
    """Checking a resumed optimizer state traces ``tx.init`` (about 0.3 ms
    on every ``partial_fit``): it is remembered per transformation and params shapes."""
    from jaxnn import _saver

    x, _, y, _ = seed_data
    inits = []
    adam = optax.adam(0.01)
    tx = optax.GradientTransformation(lambda p: inits.append(1) or adam.init(p), adam.update)
    kw = dict(loss="mse", key=jax.random.key(1), optimizer=tx, batch_size=800, progress=False)
    model = seed_model()
    first = jaxnn.fit(model, model.init(jax.random.key(0)), x, y, epochs=1, **kw)
    before = len(inits)
    second = jaxnn.fit(model, first.params, x, y, epochs=2, resume=first, **kw)
    assert len(inits) == before + 1  # traced once to check the state's shapes
    jaxnn.fit(model, second.params, x, y, epochs=3, resume=second, **kw)
    assert len(inits) == before + 1
    wider = jaxnn.mlp([3, 8, 1]).init(jax.random.key(0))
    assert jax.tree.structure(_saver.opt_state_shapes(tx, wider)) == jax.tree.structure(
        adam.init(wider)
    )
    assert len(inits) == before + 2  # other shapes: traced again
    with pytest.raises(ValueError, match="opt_state does not match this optimizer"):
        jaxnn.fit(
            model,
            first.params,
            x,
            y,
            epochs=2,
            resume=first.state._replace(opt_state=adam.init(wider)),
            **kw,
        )


def test_results_print_a_summary_not_their_arrays(seed_data):
    xtr, xte, ytr, yte = seed_data
    r = quick_fit(xtr, ytr, epochs=2, batch_size=100, validation=(xte, yte), metrics=["r2"])
    text = repr(r)
    assert (
        text.startswith("FitResult(epochs_run=2, stop_reason=COMPLETED, final: loss=")
        and "val_r2=" in text
    )
    assert "Array" not in text and len(text) < 400
    many = jaxnn.fit_many(seed_model(), None, xtr, ytr, loss="mse", key=jax.random.key(1), epochs=2, num_models=3,
                          progress=False)  # fmt: skip
    assert repr(many).startswith(
        "ManyResult(3 models, epochs_run 2-2, best: model "
    ) and "Array" not in repr(many)
    assert (
        str(jaxnn.Stop.EARLY_STOPPING) == "EARLY_STOPPING"
        and f"{jaxnn.Stop.COMPLETED}" == "COMPLETED"
    )


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_a_full_disk_under_tensorboard_logs_is_an_error_naming_the_file(tmp_path):
    # The writer thread used to print a traceback, then the run failed naming no file.
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource, signal, sys, jax, jaxnn
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
        x, y = jaxnn.make_regression(jax.random.key(0), n=64)
        model = jaxnn.mlp([3, 4, 1])
        params = model.init(jax.random.key(1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            jaxnn.fit(model, params, x, y, loss="mse", key=jax.random.key(2), epochs=50, progress=False,
                      log_dir=sys.argv[1], tuning=jaxnn.Tuning(epochs_per_call=1))
        except OSError as e:
            print("OSError:", e)
    """)
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": "off", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tb")], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert "OSError: [Errno 27] File too large (writing " in done.stdout, done.stdout + done.stderr
    assert "events.out.tfevents" in done.stdout and "Traceback" not in done.stderr, done.stderr
