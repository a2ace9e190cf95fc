import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CompileCounter, assert_close

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
        x,
        y,
        loss="mse",
        key=jax.random.key(1),
        init_params=p,
        hyperparams={"learning_rate": lrs},
        batch_size=16,
        epochs=3,
        validation_data=(xv, yv),
        progress=False,
    )
    keys = jax.random.split(jax.random.key(1), 3)
    for i, lr in enumerate(lrs):
        one = jaxnn.fit(
            m,
            p,
            x,
            y,
            loss="mse",
            key=keys[i],
            learning_rate=lr,
            batch_size=16,
            epochs=3,
            validation_data=(xv, yv),
            progress=False,
        )
        assert_close(jax.tree.map(lambda a: a[i], r.params), one.params, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.history["val_loss"][i], one.history["val_loss"], rtol=1e-4)


def test_table_sorted_best_first_and_helpers(data):
    x, y, xv, yv = data
    m = model()
    r = fit_many(
        m,
        x,
        y,
        loss="mse",
        key=jax.random.key(2),
        hyperparams={"learning_rate": [0.001, 0.5]},
        batch_size=8,
        epochs=4,
        validation_data=(xv, yv),
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


def test_ensemble_over_seeds_differs_per_model(data):
    x, y, _, _ = data
    r = fit_many(model(), x, y, loss="mse", key=jax.random.key(3), num_models=4, epochs=1, progress=False)
    w = np.asarray(r.params[0]["w"])
    assert w.shape == (4, 3, 4)
    assert len({w[i].tobytes() for i in range(4)}) == 4


def test_a_new_sweep_with_the_same_shapes_does_not_recompile(data):
    x, y, _, _ = data
    kw = dict(loss="mse", batch_size=16, epochs=2, progress=False)
    fit_many(model(), x, y, key=jax.random.key(0), hyperparams={"learning_rate": [0.1, 0.2]}, **kw)
    with CompileCounter() as c:
        fit_many(model(), x, y, key=jax.random.key(1), hyperparams={"learning_rate": [0.3, 0.01]}, **kw)
    assert c.count == 0


def test_momentum_and_weight_decay_are_swept_as_data(data):
    x, y, _, _ = data
    r = fit_many(
        model(),
        x,
        y,
        loss="mse",
        key=jax.random.key(0),
        optimizer="adamw",
        progress=False,
        epochs=2,
        hyperparams={"learning_rate": 0.01, "weight_decay": [0.0, 0.1, 1.0]},
    )
    assert r.hyperparams["weight_decay"].tolist() == pytest.approx([0.0, 0.1, 1.0])
    assert r.history["loss"].shape == (3, 2)
    m = fit_many(
        model(),
        x,
        y,
        loss="mse",
        key=jax.random.key(0),
        optimizer="momentum",
        progress=False,
        hyperparams={"momentum": [0.0, 0.9]},
    )
    assert not np.allclose(m.params[0]["w"][0], m.params[0]["w"][1])


def test_divergent_models_stop_alone_and_early_stopping_per_model(data):
    x, y, xv, yv = data
    lin = jaxnn.mlp([3, 8, 1])
    with pytest.warns(RuntimeWarning, match="1 of 2 models"):
        r = fit_many(
            lin,
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            hyperparams={"learning_rate": [0.01, 1e3]},
            batch_size=8,
            epochs=6,
            validation_data=(xv, yv),
            progress=False,
        )
    assert r.stop_reasons == [None, "non_finite_loss"]
    assert r.epochs_run[0] == 6 and r.epochs_run[1] < 6
    assert np.isnan(r.history["loss"][1, -1]) and np.isfinite(r.history["loss"][0]).all()
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(r.params))


def test_bad_sweeps():
    x, y = jaxnn.make_regression(jax.random.key(0), n=20)
    with pytest.raises(ValueError, match="disagree"):
        fit_many(
            model(),
            x,
            y,
            loss="mse",
            key=jax.random.key(0),
            num_models=3,
            hyperparams={"learning_rate": [0.1, 0.2]},
            progress=False,
        )
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        fit_many(model(), x, y, loss="mse", key=jax.random.key(0), hyperparams={"learning_rate": [0.1, -1]})
    with pytest.raises(ValueError, match="finite"):
        fit_many(model(), x, y, loss="mse", key=jax.random.key(0), hyperparams={"learning_rate": [np.nan]})
    with pytest.raises(ValueError, match="optimizer name"):
        fit_many(model(), x, y, loss="mse", key=jax.random.key(0), optimizer="lbfgs")
