"""Two processes on localhost (CPU, 2 virtual devices each) train one model together
and end with the parameters of one process with 4 devices."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import assert_close

WORKER = textwrap.dedent("""
    import json, sys
    import jaxnn
    port, pid, nproc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if nproc > 1:
        jaxnn.distributed.initialize(f"localhost:{port}", nproc, pid)
    import jax, numpy as np
    x, y = jaxnn.make_regression(jax.random.key(0), n=256)
    xv, yv = jaxnn.make_regression(jax.random.key(9), n=40)
    rows = jaxnn.distributed.local_rows(256)
    model = jaxnn.mlp([3, 8, 1])
    r = jaxnn.fit(model, model.init(jax.random.key(1)), x[rows], y[rows], loss="mse", optimizer=jaxnn.optim.sgd(0.1),
                  batch_size=32, epochs=3, key=jax.random.key(2), validation=(xv, yv), progress=False)
    params = jaxnn.distributed.fetch(r.params)
    print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(),
                      "params": [np.asarray(a).tolist() for a in jax.tree.leaves(params)],
                      "val_loss": r.history["val_loss"].tolist(), "steps": int(jaxnn.distributed.fetch(r.state.step))}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(nproc: int, devices_each: int, worker: str = WORKER, args: tuple = ()) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices_each)}
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, str(port), str(i), str(nproc), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(nproc)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_four_devices():
    (one,) = _launch(1, 4)
    two = _launch(2, 2)
    assert one["devices"] == 4 and one["processes"] == 1
    assert all(t["devices"] == 4 and t["processes"] == 2 for t in two)
    assert two[0]["steps"] == one["steps"] == 3 * 8
    for t in two:
        assert_close(t["params"], one["params"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t["val_loss"], one["val_loss"], rtol=1e-5)


STREAM_WORKER = textwrap.dedent("""
    import json, sys
    import jaxnn
    port, pid, nproc, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if nproc > 1:
        jaxnn.distributed.initialize(f"localhost:{port}", nproc, pid)
    import jax, numpy as np
    read, rows = [0], jaxnn._stream.Source.rows
    jaxnn._stream.Source.rows = lambda self, idx: read.__setitem__(0, read[0] + len(idx)) or rows(self, idx)
    x = np.load(path, mmap_mode="r")  # every process opens the whole file and reads its devices' rows
    y = np.load(path.replace(".npy", ".y.npy"))
    xv, yv = np.asarray(x[:40]), y[:40]
    model = jaxnn.mlp([3, 8, 1])
    kw = dict(loss="mse", optimizer=jaxnn.optim.sgd(0.1), batch_size=32, epochs=3, key=jax.random.key(2),
              validation=(xv, yv),
              progress=False)
    r = jaxnn.fit(model, model.init(jax.random.key(1)), x, y, **kw)
    params, rows_read = jaxnn.distributed.fetch(r.params), read[0]
    same = None
    if nproc == 1:  # the same data in memory, over the same devices
        m = jaxnn.fit(model, model.init(jax.random.key(1)), np.asarray(x), y, **kw)
        same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(m.params)))
    print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(), "same_as_memory": same,
                      "rows_read": rows_read,
                      "params": [np.asarray(a).tolist() for a in jax.tree.leaves(params)],
                      "val_loss": r.history["val_loss"].tolist()}))
""")


@pytest.mark.slow
def test_a_streamed_fit_on_two_processes_equals_one_process(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((250, 3)).astype(np.float32)  # 250: the last batch is padded
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "x.y.npy", x.sum(axis=1, keepdims=True) * 0.1)
    args = [str(tmp_path / "x.npy")]
    (one,) = _launch(1, 4, STREAM_WORKER, args)
    two = _launch(2, 2, STREAM_WORKER, args)
    assert one["devices"] == 4 and all(t["devices"] == 4 and t["processes"] == 2 for t in two)
    assert one["same_as_memory"]  # bit for bit, over four devices
    assert (
        one["rows_read"] == 1 + 3 * 8 * 32
    )  # a first row for shapes, then 3 epochs of 8 batches of 32
    assert all(
        t["rows_read"] == 1 + 3 * 8 * 16 for t in two
    )  # each process reads only its half of each batch
    for t in two:
        assert_close(t["params"], one["params"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t["val_loss"], one["val_loss"], rtol=1e-5)


MANY_WORKER = textwrap.dedent("""
    import json, os, sys
    import jaxnn
    port, pid, nproc, folder = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if nproc > 1:
        jaxnn.distributed.initialize(f"localhost:{port}", nproc, pid)
    import jax, numpy as np
    x, y = jaxnn.make_regression(jax.random.key(0), n=256)  # every process passes the whole data
    model = jaxnn.mlp([3, 8, 1])
    leaves = lambda tree: [np.asarray(a).tolist() for a in jax.tree.leaves(tree)]
    many = jaxnn.fit_many(model, None, x, y, loss="mse", optimizer=jaxnn.optim.sgd(np.linspace(0.01, 0.2, 8)),
                          batch_size=32, epochs=3, key=jax.random.key(2), validation=0.2, progress=False,
                          checkpoints=jaxnn.Checkpoints(os.path.join(folder, "many"), every=2))
    kw = dict(loss="mse", key=jax.random.key(3), space={"learning_rate": jaxnn.space.loguniform(1e-3, 0.3)},
              schedule=jaxnn.SuccessiveHalving(1, 9, 3), num_configs=16, slots=8, validation=0.2, progress=False)
    saved = jaxnn.Checkpoints(os.path.join(folder, "search"))
    result = jaxnn.search(model, None, x, y, checkpoints=saved, **kw)
    again = jaxnn.search(model, None, x, y, resume=saved.dir, **kw)  # from its last state: nothing left to train
    try:
        jaxnn.fit_many(model, None, x, y + pid, loss="mse", epochs=1, key=jax.random.key(2), num_models=8)
        refused = ""
    except ValueError as e:
        refused = str(e)
    try:  # the same x and y, other sample weights
        jaxnn.fit_many(model, None, x, y, loss="mse", epochs=1, key=jax.random.key(2), num_models=8,
                       sample_weight=np.full(256, 1.0 + pid))
        refused_weights = ""
    except ValueError as e:
        refused_weights = str(e)
    print(json.dumps({"processes": jax.process_count(), "many": leaves(many.params),
                      "val_loss": many.history["val_loss"].tolist(), "trials": result.trials,
                      "best": leaves(result.best_params), "resumed": again.trials == result.trials,
                      "files": sorted(f for f in os.listdir(os.path.join(folder, "many")) if f.endswith(".jaxnn")),
                      "refused": refused, "refused_weights": refused_weights}))
""")


@pytest.mark.slow
def test_fit_many_and_search_on_two_processes_equal_one_process(tmp_path):
    """The models (slots) are split over every device of every process, each process
    passing the whole data: two processes of 2 devices end bit for bit as one of 4,
    checkpoints included (process 0 writes; a save gathers the split models)."""
    (one,) = _launch(1, 4, MANY_WORKER, (str(tmp_path / "one"),))
    two = _launch(2, 2, MANY_WORKER, (str(tmp_path / "two"),))
    assert one["processes"] == 1 and all(t["processes"] == 2 for t in two)
    assert one["files"] == ["epoch-0000000002.jaxnn", "epoch-0000000003.jaxnn"]
    for t in two:
        assert t["many"] == one["many"] and t["val_loss"] == one["val_loss"]
        assert t["trials"] == one["trials"] and t["best"] == one["best"]
        assert t["resumed"] and t["files"] == one["files"]
        assert "every process passes the same x, y" in t["refused"]
        assert "sample_weight" in t["refused_weights"]
    assert one["refused"] == one["refused_weights"] == ""  # one process: nothing to compare
    assert list((tmp_path / "two" / "search").glob("search-*.jaxnn"))


def test_fetch_copies_cpu_arrays_to_the_host_and_keeps_other_leaves():
    """On a CPU, ``fetch`` copies each array (1-2 us, not ``device_get``'s 10-15 us):
    the copy owns its memory, so donating the array afterwards cannot change it."""
    import jax
    import jax.numpy as jnp

    from jaxnn.distributed import fetch

    a, b = jnp.arange(4.0), jnp.int32(7)
    tree = {"a": a, "b": b, "n": 3, "h": np.ones(2), "key": jax.random.key(0)}
    out = fetch(tree)
    assert (
        out["a"].tolist() == [0.0, 1.0, 2.0, 3.0] and out["b"] == 7 and out["b"].dtype == np.int32
    )
    assert out["n"] == 3 and out["h"] is tree["h"]  # not jax arrays: as they were
    assert jax.dtypes.issubdtype(
        out["key"].dtype, jax.dtypes.prng_key
    )  # keys go through device_get
    host = fetch(a)
    assert isinstance(host, np.ndarray) and host.flags.owndata
    jax.jit(lambda v: v * 0, donate_argnums=0)(a)
    assert host.tolist() == [0.0, 1.0, 2.0, 3.0]
