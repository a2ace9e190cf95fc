import functools

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest
from helpers import CompileCounter, assert_bitwise_equal, assert_close

import jaxnn

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
    r = quick_fit(xtr, ytr, model=model, loss="rmse", learning_rate=0.1, batch_size=1, epochs=40)
    test_rmse = float(jaxnn.losses.rmse(jaxnn.predict(model, r.params, xte), yte))
    assert test_rmse < 0.8 * linear, (test_rmse, linear)
    assert r.history["loss"][-1] < r.history["loss"][0]
    assert r.epochs_run == 40 and r.stop_reason is None and int(r.state.step) == 40 * 800


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
        optimizer="adam",
        learning_rate=0.01,
        batch_size=16,
        epochs=60,
        validation_data=(xte, yte),
        metrics=["accuracy"],
    )
    assert r.history["val_accuracy"][-1] >= 0.9  # iris: a small MLP reaches 0.9+ held-out accuracy
    assert jaxnn.evaluate(model, r.params, xte, yte, loss="softmax_cross_entropy", metrics=["accuracy"])[
        "accuracy"
    ] == pytest.approx(float(r.history["val_accuracy"][-1]))


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
    r = quick_fit(x, y, model=model, params=params, batch_size=4, epochs=2, shuffle=False, learning_rate=0.5)
    tx = optax.sgd(0.5)
    step = jax.jit(jaxnn.make_train_step(model.apply, "mse", tx))
    state = jaxnn.init_state(params, tx, key)
    for _ in range(2):
        for i in range(0, 10, 4):
            state, _ = step(state, (x[i : i + 4], y[i : i + 4]))
    assert_close(r.params, state.params)
    assert int(r.state.step) == 6
    dropped = quick_fit(x, y, model=model, params=params, batch_size=4, epochs=2, drop_remainder=True)
    assert int(dropped.state.step) == 4


def test_named_sgd_is_optax_sgd(seed_data):
    xtr, _, ytr, _ = seed_data
    a = quick_fit(xtr, ytr, learning_rate=0.05, batch_size=50, epochs=2)
    b = quick_fit(xtr, ytr, optimizer=optax.sgd(0.05), batch_size=50, epochs=2)
    assert_close(a.params, b.params)


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "adamw"])
def test_other_optimizers_and_schedules_train(seed_data, optimizer):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(
        xtr, ytr, optimizer=optimizer, learning_rate=optax.linear_schedule(0.01, 0.001, 100), batch_size=32, epochs=3
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
    one = quick_fit(xtr, ytr, batch_size=10, epochs=5, epochs_per_call=1)
    all_ = quick_fit(xtr, ytr, batch_size=10, epochs=5, epochs_per_call=5)
    odd = quick_fit(xtr, ytr, batch_size=10, epochs=5, epochs_per_call=3)  # last call half empty
    assert_bitwise_equal(one.params, all_.params)
    assert_bitwise_equal(one.params, odd.params)
    np.testing.assert_array_equal(one.history["loss"], odd.history["loss"])


def test_no_recompilation_between_calls(seed_data):
    xtr, xte, ytr, yte = seed_data
    kw = dict(batch_size=16, epochs=4, epochs_per_call=2, validation_data=(xte, yte), metrics=["r2"])
    quick_fit(xtr, ytr, learning_rate=0.1, **kw)
    with CompileCounter() as c:
        quick_fit(xtr, ytr, learning_rate=0.1, **kw)
        quick_fit(xtr, ytr, learning_rate=0.3, **kw)  # the learning rate is data
        quick_fit(xtr, ytr, learning_rate=0.1, key=jax.random.key(9), **{**kw, "epochs": 6})  # so are epochs
        quick_fit(xtr, ytr, model=seed_model(), learning_rate=0.1, **kw)  # an equal model, built again
    assert c.count == 0


def test_history_and_validation_split(seed_data):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(xtr, ytr, batch_size=20, epochs=3, validation_split=0.25, metrics=["rmse", "r2"])
    assert set(r.history) == {"epoch", "loss", "val_loss", "val_rmse", "val_r2"}
    assert all(len(v) == 3 for v in r.history.values())
    assert int(r.state.step) == 3 * 30  # 600 training rows after the split, batches of 20
    no_val = quick_fit(xtr, ytr, batch_size=20, epochs=2, metrics=["rmse"])
    assert set(no_val.history) == {"epoch", "loss", "rmse"}  # metrics on the training data


def test_early_stopping_stops_restores_and_never_overshoots(key):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)  # noise: validation loss soon stops improving
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
        epochs_per_call=200,
        optimizer="adam",
        learning_rate=0.01,
        validation_data=(xv, yv),
        early_stopping=es,
    )
    assert r.stop_reason == "early_stopping" and "did not improve" in r.message
    best = int(np.argmin(r.history["val_loss"]))
    assert r.epochs_run == best + 1 + 3  # stopped exactly `patience` epochs after the best one
    val = jaxnn.evaluate(model, r.params, xv, yv, loss="mse")["loss"]
    assert val == pytest.approx(float(r.history["val_loss"][best]), rel=1e-5)  # best params restored
    kept = quick_fit(
        x,
        y,
        model=model,
        batch_size=8,
        epochs=200,
        optimizer="adam",
        learning_rate=0.01,
        validation_data=(xv, yv),
        early_stopping=es._replace(restore_best=False),
    )
    assert_bitwise_equal(kept.params, kept.state.params)


def test_nan_guard_stops_at_once_and_keeps_finite_params(seed_data):
    xtr, _, ytr, _ = seed_data
    model = jaxnn.mlp([3, 16, 1])  # a linear output: a huge learning rate diverges
    with pytest.warns(RuntimeWarning, match="non-finite.*learning rate"):
        r = quick_fit(xtr, ytr, model=model, learning_rate=50.0, batch_size=10, epochs=20)
    assert r.stop_reason == "non_finite_loss"
    assert r.epochs_run < 20
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(r.params))
    stop_step = int(r.message.split("step ")[1].split(";")[0])
    assert int(r.state.step) in (stop_step - 1, stop_step - 2)  # the last finite step's params


def test_single_row_batches_and_a_plain_apply_fn(key):
    x, y = jaxnn.make_regression(key, n=20)

    def apply_fn(params, x):  # any pure function of (params, x)
        return x @ params["w"] + params["b"]

    r = jaxnn.fit(
        apply_fn,
        {"w": jnp.zeros((3, 1)), "b": jnp.zeros(1)},
        x,
        y,
        loss="mse",
        batch_size=1,
        epochs=5,
        learning_rate=0.05,
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
    assert_close(jaxnn.predict(model, params, xte, batch_size=7), model.apply(params, jnp.asarray(xte)))
    out = jaxnn.evaluate(model, params, xte, yte[:, 0], loss="mse", metrics=["rmse", "mae"])
    assert set(out) == {"loss", "rmse", "mae"}
    assert out["rmse"] == pytest.approx(np.sqrt(out["loss"]), rel=1e-5)


def test_progress_bar_and_plot(seed_data, capsys):
    xtr, _, ytr, _ = seed_data
    r = quick_fit(xtr, ytr, epochs=4, progress=True, validation_split=0.2)
    assert "4/4" in capsys.readouterr().err
    fig = jaxnn.plot_history(r.history)
    assert [line.get_label() for line in fig.axes[0].lines] == ["loss", "val_loss"]


BAD = [
    (dict(batch_size=0), ValueError, r"batch_size must be in \[1, 800\]"),
    (dict(batch_size=801), ValueError, r"batch_size must be in \[1, 800\]"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (dict(epochs=0), ValueError, r"epochs must be in \[1, 2147483647\]"),
    (dict(learning_rate=-0.1), ValueError, "finite number > 0"),
    (dict(learning_rate=float("nan")), ValueError, "finite number > 0"),
    (dict(learning_rate="fast"), TypeError, "learning_rate must be a number"),
    (dict(optimizer="adagrad"), ValueError, "unknown optimizer 'adagrad'"),
    (dict(optimizer=optax.sgd(0.1), learning_rate=0.1), ValueError, "used only with an optimizer name"),
    (dict(loss="cross_entropy"), ValueError, "unknown loss"),
    (dict(key=0), TypeError, "PRNG key"),
    (dict(validation_split=0.2, validation_data=(np.ones((2, 3)), np.ones(2))), ValueError, "not both"),
    (dict(validation_split=1.5), ValueError, r"validation_split must be in \(0, 1\)"),
    (dict(validation_data=(np.ones((2, 4)), np.ones(2))), ValueError, "validation x has 4 features"),
    (dict(metrics=["f1"]), ValueError, "unknown metric 'f1'"),
    (dict(early_stopping=jaxnn.EarlyStopping()), ValueError, "monitor='val_loss' is not recorded"),
    (dict(epochs_per_call=0), ValueError, "epochs_per_call"),
]


@pytest.mark.parametrize(("kw", "err", "match"), BAD, ids=[m for _, _, m in BAD])
def test_bad_settings_raise_before_compiling(seed_data, kw, err, match):
    xtr, _, ytr, _ = seed_data
    with CompileCounter() as c, pytest.raises(err, match=match):
        quick_fit(xtr, ytr, **kw)
    assert c.count == 0


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
        (lambda: fit(xtr, labels + 3, loss="softmax_cross_entropy"), ValueError, r"labels must lie in \[0, 3\)"),
        (lambda: fit(xtr, labels.astype(np.float32), loss="softmax_cross_entropy"), ValueError, "integer class"),
        (lambda: fit(xtr, np.zeros((800, 2)), loss="mse"), ValueError, r"expected targets of shape \(n, 3\)"),
        (lambda: fit(xtr, np.full((800, 3), 2.0), loss="binary_cross_entropy"), ValueError, r"targets in \[0, 1\]"),
        (lambda: fit(xtr[:, :2], labels, loss="softmax_cross_entropy"), ValueError, "x has 2 features"),
        (lambda: fit(xtr, labels[:10], loss="softmax_cross_entropy"), ValueError, "must have shape"),
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
    from jaxnn._loop import shuffled_order

    order = np.asarray(shuffled_order(jax.random.key(n), n))
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    np.testing.assert_array_equal(order, np.asarray(shuffled_order(jax.random.key(n), n)))


def test_epoch_shuffle_looks_uniform():
    from jaxnn._loop import shuffled_order

    n, trials = 8, 2000
    orders = np.stack(
        [
            np.asarray(o)
            for o in jax.jit(jax.vmap(lambda k: shuffled_order(k, n)))(jax.random.split(jax.random.key(0), trials))
        ]
    )
    counts = np.stack([(orders == v).sum(axis=0) for v in range(n)])  # value v at position p
    expected = trials / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 110  # 49 degrees of freedom: p < 1e-6 above 110
    assert len({tuple(o) for o in orders}) > 0.95 * trials  # almost never the same order twice


def test_device_arrays_train_like_numpy(seed_data):
    xtr, _, ytr, _ = seed_data
    a = quick_fit(xtr, ytr, batch_size=32, epochs=2, validation_split=0.1)
    b = quick_fit(jnp.asarray(xtr), jnp.asarray(ytr), batch_size=32, epochs=2, validation_split=0.1)
    assert_bitwise_equal(a.params, b.params)
