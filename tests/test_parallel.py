"""Data parallel fit on 8 virtual CPU devices (set in a subprocess before jax starts)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close, made_once

import jaxnn

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import jax, numpy as np, jaxnn
    assert jax.device_count() == 8, jax.devices()
    x, y = jaxnn.make_regression(jax.random.key(0), n=203)
    model = jaxnn.mlp([3, 16, 1])
    p = model.init(jax.random.key(1))
    out = {}
    for name, devices, bs in [("one", 1, 32), ("all", None, 32), ("four", 4, 30)]:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = jaxnn.fit(model, p, x, y, loss="mse", optimizer=jaxnn.optim.sgd(0.1), batch_size=bs, epochs=3,
                          key=jax.random.key(2),
                          devices=devices, validation=0.2, metrics=["r2"], progress=False)
        out[name] = {"params": [np.asarray(l).tolist() for l in jax.tree.leaves(r.params)],
                     "val_loss": r.history["val_loss"].tolist(), "steps": int(r.state.step),
                     "sharding": str(r.params[0]["w"].sharding), "warnings": [str(m.message) for m in w]}
    r1 = jaxnn.fit(model, p, x, y, loss="mse", optimizer=jaxnn.optim.sgd(0.1), batch_size=30, epochs=3,
                   key=jax.random.key(2),
                   devices=1, validation=0.2, progress=False)
    out["one30"] = {"params": [np.asarray(l).tolist() for l in jax.tree.leaves(r1.params)]}
    from flax import nnx  # an nnx Module trains data parallel too, like on one device
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden, self.out = nnx.Linear(3, 8, rngs=rngs), nnx.Linear(8, 1, rngs=rngs)
        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))
    for name, devices in [("nnx_all", None), ("nnx_one", 1)]:
        r = jaxnn.fit(Net(nnx.Rngs(0)), None, x, y, loss="mse", optimizer="adam", batch_size=32, epochs=2,
                      key=jax.random.key(2), devices=devices, progress=False)
        out[name] = {"params": [np.asarray(l).tolist() for l in jax.tree.leaves(r.params)]}
    bn = jaxnn.mlp([3, 16, 16, 1], norm="batch", dropout=0.3)  # batch statistics over the whole batch
    for name, devices in [("bn_all", None), ("bn_one", 1)]:
        r = jaxnn.fit(bn, bn.init(jax.random.key(1)), x, y, loss="mse", batch_size=32, epochs=3, key=jax.random.key(2),
                      devices=devices, validation=0.2, progress=False)
        out[name] = {"variables": [np.asarray(l).tolist() for l in jax.tree.leaves(r.params)],
                     "val_loss": r.history["val_loss"].tolist()}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    def run(folder):
        env = {**os.environ, "JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu"}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stderr[-3000:]
        folder.mkdir()
        (folder / "runs.json").write_text(out.stdout.strip().splitlines()[-1])

    return json.loads((made_once(tmp_path_factory, "eight_devices", run) / "runs.json").read_text())


@pytest.mark.slow  # end to end; CI runs it
def test_data_parallel_equals_one_device(runs):
    assert "NamedSharding" in runs["all"]["sharding"] and "SingleDevice" in runs["one"]["sharding"]
    assert runs["all"]["steps"] == runs["one"]["steps"] == 3 * 6  # 163 training rows, batches of 32
    assert_close(runs["all"]["params"], runs["one"]["params"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs["all"]["val_loss"], runs["one"]["val_loss"], rtol=1e-5)
    assert runs["all"]["warnings"] == []


@pytest.mark.slow  # shares the 8-device subprocess above; CI runs it
def test_nnx_module_data_parallel_equals_one_device(runs):
    assert_close(runs["nnx_all"]["params"], runs["nnx_one"]["params"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # shares the 8-device subprocess above; CI runs it
def test_batch_norm_and_dropout_data_parallel_equal_one_device(runs):
    # batch statistics are over the global batch (the devices' rows together, as
    # Flax's axis_name gives) and dropout masks are drawn per row of the global batch
    assert_close(runs["bn_all"]["variables"], runs["bn_one"]["variables"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs["bn_all"]["val_loss"], runs["bn_one"]["val_loss"], rtol=1e-5)


@pytest.mark.slow  # shares the 8-device subprocess above; CI runs it
def test_uneven_batch_is_padded_with_a_warning(runs):
    assert any("not a multiple of the 4 devices" in w for w in runs["four"]["warnings"])
    assert_close(runs["four"]["params"], runs["one30"]["params"], rtol=1e-5, atol=1e-6)


def test_device_selection_errors():
    x, y = jaxnn.make_regression(jax.random.key(0), n=10)
    m = jaxnn.mlp([3, 1])
    for bad, err in [(0, ValueError), (99, ValueError), (True, TypeError), ("gpu", TypeError)]:
        with pytest.raises(err, match="devices"):
            jaxnn.fit(
                m,
                m.init(jax.random.key(0)),
                x,
                y,
                loss="mse",
                key=jax.random.key(0),
                devices=bad,
                progress=False,
            )


def test_bfloat16_compute_keeps_float32_master_params():
    x, y = jaxnn.make_regression(jax.random.key(0), n=256)
    m = jaxnn.mlp([3, 32, 32, 1], output_activation="sigmoid")
    p = m.init(jax.random.key(1))
    kw = dict(
        loss="mse",
        optimizer=jaxnn.optim.sgd(0.1),
        batch_size=16,
        epochs=10,
        key=jax.random.key(2),
        progress=False,
    )
    bf = jaxnn.fit(m, p, x, y, tuning=jaxnn.Tuning(compute_dtype="bfloat16"), **kw)
    f32 = jaxnn.fit(m, p, x, y, tuning=jaxnn.Tuning(compute_dtype="float32"), **kw)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf.params))
    assert bf.history["loss"][-1] < 0.8 * bf.history["loss"][0]
    assert abs(bf.history["loss"][-1] - f32.history["loss"][-1]) < 0.1 * f32.history["loss"][-1]
    assert not np.array_equal(bf.params[0]["w"], f32.params[0]["w"])  # bf16 really was used
    with pytest.raises(ValueError, match="compute_dtype"):
        jaxnn.fit(m, p, x, y, tuning=jaxnn.Tuning(compute_dtype="int8"), **kw)


SWEEP = textwrap.dedent("""
    import json, jax, numpy as np, jaxnn
    from jaxnn import fit_many
    x, y = jaxnn.make_regression(jax.random.key(0), n=96)
    kw = dict(loss="mse", key=jax.random.key(1), optimizer=jaxnn.optim.sgd([0.01 * (i + 1) for i in range(8)]),
              batch_size=8, epochs=2, validation=(x[:16], y[:16]), progress=False)
    spread = fit_many(jaxnn.mlp([3, 4, 1]), None, x, y, **kw)
    one = fit_many(jaxnn.mlp([3, 4, 1]), None, x, y, devices=1, **kw)
    print(json.dumps({"sharding": str(spread.params[0]["w"].sharding),
                      "spread": [np.asarray(a).tolist() for a in jax.tree.leaves(spread.params)],
                      "one": [np.asarray(a).tolist() for a in jax.tree.leaves(one.params)]}))
""")


@pytest.mark.slow  # end to end; CI runs it
def test_fit_many_splits_models_over_devices():
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", SWEEP], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert "P('models'" in r["sharding"]
    assert_close(r["spread"], r["one"], rtol=1e-5, atol=1e-6)
