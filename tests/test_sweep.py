import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CompileCounter, assert_bitwise_equal, assert_close

import jaxnn
from jaxnn.sweep import best_params, fit_many, predict_ensemble


@pytest.fixture(scope="module")
def data():
    x, y = jaxnn.make_regression(jax.random.key(0), n=200)
    return x[:160], y[:160], x[160:], y[160:]


def model():
    return jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")


def test_each_model_equals_its_own_fit(data):
    x, y, xv, yv = data
    m = model()
    p = m.init(jax.random.key(5))
    lrs = [0.05, 0.2, 0.5]
    r = fit_many(
        m,
        p,
        x,
        y,
        loss="mse",
        key=jax.random.key(1),
        optimizer=jaxnn.optim.sgd(lrs),
        batch_size=16,
        epochs=3,
        validation=(xv, yv),
        progress=False,
    )
    keys = jaxnn.rng.model_keys(jax.random.key(1), 3)
    for i, lr in enumerate(lrs):
        one = jaxnn.fit(
            m,
            p,
            x,
            y,
            loss="mse",
            key=keys[i],
            optimizer=jaxnn.optim.sgd(lr),
            batch_size=16,
            epochs=3,
            validation=(xv, yv),
            progress=False,
        )
        assert_close(jax.tree.map(lambda a, i=i: a[i], r.params), one.params, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.history["val_loss"][i], one.history["val_loss"], rtol=1e-4)


def test_table_sorted_best_first_and_helpers(data):
    x, y, xv, yv = data
    m = model()
    r = fit_many(
        m,
        None,
        x,
        y,
        loss="mse",
        key=jax.random.key(2),
        optimizer=jaxnn.optim.sgd([0.001, 0.5]),
        batch_size=8,
        epochs=4,
        validation=(xv, yv),
        metrics=["r2"],
        progress=False,
    )
    assert r.history["val_loss"].shape == (2, 4) and r.history["val_r2"].shape == (2, 4)
    assert r.monitor == "val_loss"
    assert [row["model"] for row in r.table] == list(np.argsort(r.history["val_loss"][:, -1]))
    best = best_params(r)
    assert_close(best, jax.tree.map(lambda a: a[r.table[0]["model"]], r.params))
    ens = predict_ensemble(m, r.params, xv)
    assert ens.shape == (40, 1)
    assert_close(
        ens,
        (
            m.apply(jax.tree.map(lambda a: a[0], r.params), jnp.asarray(xv))
            + m.apply(jax.tree.map(lambda a: a[1], r.params), jnp.asarray(xv))
        )
        / 2,
    )


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_ensemble_over_seeds_differs_per_model(data):
    x, y, _, _ = data
    r = fit_many(
        model(),
        None,
        x,
        y,
        loss="mse",
        key=jax.random.key(3),
        num_models=4,
        epochs=1,
        progress=False,
    )
    w = np.asarray(r.params[0]["w"])
    assert w.shape == (4, 3, 4)
    assert len({w[i].tobytes() for i in range(4)}) == 4


def test_a_new_sweep_with_the_same_shapes_does_not_recompile(data):
    x, y, _, _ = data
    kw = dict(loss="mse", batch_size=16, epochs=2, progress=False)
    fit_many(
        model(), None, x, y, key=jax.random.key(0), optimizer=jaxnn.optim.sgd([0.1, 0.2]), **kw
    )
    with CompileCounter() as c:
        fit_many(
            model(), None, x, y, key=jax.random.key(1), optimizer=jaxnn.optim.sgd([0.3, 0.01]), **kw
        )
    assert c.count == 0


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_momentum_and_weight_decay_are_swept_as_data(data):
    x, y, _, _ = data
    r = fit_many(
        model(),
        None,
        x,
        y,
        loss="mse",
        key=jax.random.key(0),
        optimizer=jaxnn.optim.adamw(0.01, weight_decay=[0.0, 0.1, 1.0]),
        progress=False,
        epochs=2,
    )
    assert r.hyperparams["weight_decay"].tolist() == pytest.approx([0.0, 0.1, 1.0])
    assert r.history["loss"].shape == (3, 2)
    m = fit_many(
        model(),
        None,
        x,
        y,
        loss="mse",
        key=jax.random.key(0),
        optimizer=jaxnn.optim.momentum(momentum=[0.0, 0.9]),
        progress=False,
    )
    assert not np.allclose(m.params[0]["w"][0], m.params[0]["w"][1])


@pytest.mark.slow  # end to end; CI runs it
def test_dropout_and_batch_norm_models_sweep_dropout_as_data(data):
    x, y, xv, yv = data
    m = jaxnn.mlp([3, 16, 16, 1], norm="batch", dropout=0.5, output_activation="sigmoid")
    p = m.init(jax.random.key(5))
    rates = [0.0, 0.2, 0.6]
    kw = dict(loss="mse", batch_size=16, epochs=3, validation=(xv, yv), progress=False)
    # sgd: Adam would blow the float noise in the gradient of a bias before batch norm
    # (zero in exact arithmetic) up to full steps, which vmapped and plain fits round apart
    sgd = jaxnn.optim.sgd(0.1, l2=1e-3)
    r = fit_many(m, p, x, y, key=jax.random.key(1), optimizer=sgd, dropout=rates, **kw)
    keys = jaxnn.rng.model_keys(jax.random.key(1), 3)
    for i, rate in enumerate(rates):  # each model is the fit of a network built with its rate
        mi = jaxnn.mlp([3, 16, 16, 1], norm="batch", dropout=rate, output_activation="sigmoid")
        one = jaxnn.fit(mi, p, x, y, key=keys[i], optimizer=sgd, **kw)
        got = jax.tree.map(
            lambda a, i=i: a[i], {k: v for k, v in r.params.items() if k != "dropout_rate"}
        )
        assert_close(got, one.params, rtol=1e-4, atol=1e-6)
    assert [
        row["dropout"] for row in sorted(r.table, key=lambda row: row["model"])
    ] == pytest.approx(rates)
    with CompileCounter() as c:  # other rates: the same program
        other = jaxnn.optim.sgd(0.1, l2=[0.0, 1e-2, 1e-4])
        fit_many(m, p, x, y, key=jax.random.key(1), optimizer=other, dropout=[0.1, 0.3, 0.4], **kw)
    assert c.count == 0
    with pytest.raises(ValueError, match="dropout= needs a jaxnn.mlp built with dropout"):
        fit_many(
            model(), None, x, y, key=jax.random.key(1), dropout=rates, loss="mse", progress=False
        )
    with pytest.raises(ValueError, match=r"dropout must be a rate in \[0, 1\)"):
        fit_many(
            m, None, x, y, key=jax.random.key(1), dropout=[0.5, 1.0], loss="mse", progress=False
        )


def test_divergent_models_stop_alone_and_early_stopping_per_model(data):
    x, y, xv, yv = data
    lin = jaxnn.mlp([3, 8, 1])
    with pytest.warns(RuntimeWarning, match="1 of 2 models") as caught:
        r = fit_many(
            lin,
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.sgd([0.01, 1e3]),
            batch_size=8,
            epochs=6,
            validation=(xv, yv),
            progress=False,
        )
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert r.stop_reasons == [jaxnn.Stop.COMPLETED, jaxnn.Stop.NON_FINITE_LOSS]
    assert r.epochs_run[0] == 6 and r.epochs_run[1] < 6
    assert np.isnan(r.history["loss"][1, -1]) and np.isfinite(r.history["loss"][0]).all()
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(r.params))


def test_bad_sweeps():
    x, y = jaxnn.make_regression(jax.random.key(0), n=20)
    with pytest.raises(ValueError, match="disagree"):
        fit_many(
            model(),
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            num_models=3,
            optimizer=jaxnn.optim.sgd([0.1, 0.2]),
            progress=False,
        )
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        fit_many(
            model(),
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.sgd([0.1, -1]),
        )
    with pytest.raises(ValueError, match="finite"):
        fit_many(
            model(),
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.sgd([np.nan]),
        )
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        fit_many(model(), None, x, y, loss="mse", key=jax.random.key(0), optimizer="lbfgs")
    with pytest.raises(ValueError, match="sgd has no hyperparameter 'b1'"):
        fit_many(
            model(),
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.Optimizer("sgd", {"b1": [0.9, 0.8]}),
        )
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        fit_many(
            model(),
            None,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.sgd(["0.1"]),
        )


@pytest.mark.slow  # end to end; CI runs it
def test_checkpoints_and_resume_continue_a_sweep_exactly(data, tmp_path):
    x, y, xv, yv = data
    kw = dict(
        loss="mse",
        key=jax.random.key(0),
        optimizer=jaxnn.optim.adam([0.003, 0.01, 0.03], b1=[0.8, 0.9, 0.95]),
        batch_size=16,
        validation=(xv, yv),
        progress=False,
    )
    straight = fit_many(model(), None, x, y, epochs=5, **kw)
    first = fit_many(
        model(),
        None,
        x,
        y,
        epochs=3,
        checkpoints=jaxnn.Checkpoints(tmp_path, every=1, keep=2),
        **kw,
    )
    assert sorted(p.name for p in tmp_path.glob("*.jaxnn")) == [
        "epoch-0000000002.jaxnn",
        "epoch-0000000003.jaxnn",
    ]
    from_folder = fit_many(model(), None, x, y, epochs=5, resume=tmp_path, **kw)
    from_result = fit_many(model(), None, x, y, epochs=5, resume=first, **kw)
    with pytest.raises(ValueError, match="opt_state does not match this optimizer"):
        fit_many(
            model(),
            None,
            x,
            y,
            epochs=5,
            resume=first,
            **{**kw, "optimizer": jaxnn.optim.sgd([0.1] * 3)},
        )
    for resumed in (from_folder, from_result):
        assert_bitwise_equal(resumed.params, straight.params)
        assert resumed.epochs_run.tolist() == [5, 5, 5]
    np.testing.assert_array_equal(from_folder.history["val_loss"], straight.history["val_loss"])
    np.testing.assert_array_equal(
        from_result.history["val_loss"], straight.history["val_loss"][:, 3:]
    )
    params, meta = jaxnn.checkpoint.load_params(tmp_path, first.params)
    assert meta["epoch"] == 3
    assert_bitwise_equal(params, first.state.params)


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import (  # noqa: E402
    X,
    bad_input_test,
    bad_labels,
    bad_lrs,
    bad_ranks,
    case,
    expect,
    many,
    nonfinite,
    option_test,
    poisoned,
)

# fit_many -----------------------------------------------------------------------------


@case("fit_many", "rank")
def _(data, tmp):
    expect(ValueError, r"x must be 2-D", many, x=np.ones(data.draw(bad_ranks)))


@case("fit_many", "length")
def _(data, tmp):
    lrs = data.draw(st.lists(st.floats(0.01, 1), min_size=2, max_size=4))
    expect(
        ValueError,
        "disagree on the number of models",
        lambda: many(optimizer=jaxnn.optim.sgd(lrs), num_models=len(lrs) + 1),
    )


@case("fit_many", "nonfinite")
def _(data, tmp):
    if data.draw(st.booleans()):
        expect(ValueError, "non-finite value", many, x=poisoned(data, X, data.draw(nonfinite)))
    else:
        expect(
            ValueError,
            "momentum must be a finite number >= 0 within float32.s range",
            lambda: many(optimizer=jaxnn.optim.momentum(0.01, [0.5, data.draw(nonfinite)])),
        )


@case("fit_many", "empty")
def _(data, tmp):
    expect(ValueError, "at least one row", many, x=np.ones((0, 3)), y=np.ones((0, 2)))


@case("fit_many", "overflow")
def _(data, tmp):
    expect(
        ValueError,
        r"num_models must be in \[1, 2147483647\]|elements in one array",
        many,
        num_models=data.draw(st.integers(2**27, 2**40)),
    )


@case("fit_many", "labels")
def _(data, tmp):
    expect(
        ValueError,
        r"labels must lie in \[0, 2\)|needs integer class labels",
        many,
        y=bad_labels(data, 2),
        loss="softmax_cross_entropy",
    )


@case("fit_many", "batch_size")
def _(data, tmp):
    expect(
        ValueError,
        r"batch_size must be in \[1, 10\]",
        many,
        batch_size=data.draw(st.sampled_from([0, -1, 11, 99])),
    )


@case("fit_many", "learning_rate")
def _(data, tmp):
    lr = data.draw(bad_lrs)
    expect(
        ValueError,
        "learning_rate must be a finite number > 0 within float32's range",
        lambda: many(optimizer=jaxnn.optim.sgd([0.1, lr])),
    )


@case("fit_many", "name")
def _(data, tmp):
    name = data.draw(st.text(max_size=10).filter(lambda s: s not in jaxnn.optim.OPTIMIZERS))
    expect(ValueError, "unknown optimizer .*; expected one of", many, optimizer=name)


test_bad_input_gets_a_clear_error = bad_input_test("fit_many")
test_a_bad_option_gets_a_clear_error = option_test("fit_many")
