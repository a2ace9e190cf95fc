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
    r = jaxnn.fit(model, model.init(jax.random.key(1)), x[rows], y[rows], loss="mse", learning_rate=0.1,
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


def _launch(nproc: int, devices_each: int) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices_each)}
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(nproc)],
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
