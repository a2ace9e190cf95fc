"""The seed fit's trained params, pinned bit for bit (SHA-256 of their bytes).

Refactoring the setup, the loop or the driver must not move a single bit of what
``fit`` and ``fit_many`` compute on the CPU. The hashes were recorded before the
redesign (jaxnn 0.1.0) and depend on XLA's CPU code generation, so they are kept per
jax version and per instruction set (XLA compiles for the host: an AVX-512 machine
rounds some sums apart from an AVX2 one); a jax version or CPU without a recorded
hash prints the value to record.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnn


def _isa() -> str:
    """The widest vector instruction set of this CPU that XLA's code generation uses."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"


PINNED = {  # (jax version, instruction set) -> {case: sha256 of the trained params' bytes}
    # each recorded from jaxnn 0.1.0's code, or (AVX2) from 6351fa4's, which gave 0.1.0's on AVX-512
    ("0.10.2", "avx512"): {
        "batch-1": "78fe4e12dd26250d204e1a8b0f1a8a979cb46f6cd113341adb76ee8c356debc1",
        "batch-100-chunked": "ad097b5982485e5a2151dec7b123a34b936f8e1d1c5141a98c1ea9063c34d454",
        "batch-32-validation-early-stopping": "98920e56ab3a3cbdb5be3fe40505fddd7309ed4ecfedcf9f8051adf4e9dded83",
        "fit-many-3-models": "829a03a446a266994d0d4caef79f09f7a5b53b1e12a396d162ca3609efa63eac",
    },
    ("0.10.2", "avx2"): {
        "batch-1": "78fe4e12dd26250d204e1a8b0f1a8a979cb46f6cd113341adb76ee8c356debc1",
        "batch-100-chunked": "117c2537948a20686450e3b55a589311017fb7cbf04a44a336dd970a809a3222",
        "batch-32-validation-early-stopping": "5f83538fb1165e188a20b8fdea9a77179983a487dea7f3f248dc93d5f9a7a516",
        "fit-many-3-models": "61df23c9988fe511a8b9e23fb326fb8ac09cde3237ef7d705ee6265c3bc159be",
    },
    ("0.12.1", "avx2"): {  # Python 3.13; recorded from 6351fa4's code, equal to this one's
        "batch-1": "706028a2670387793fd2908dd88b2878d4a40439098d94adf673c867496edba9",
        "batch-100-chunked": "4587a23528420fb85193a0ada2b52cfdf18f837c34bf2293aadb491f65ee55cb",
        "batch-32-validation-early-stopping": "a80886122f130eb90307b71b7e78952796337c94455bc61d8b89c4378319b4be",
        "fit-many-3-models": "300c9d0cf1dc26be0076352a38e3bfe3372a995159abd8eec2dae4e94a3145b6",
    },
    ("0.12.0.1", "avx512"): {  # Python 3.13, the newest jax on the package index (CI's second pass)
        "batch-1": "bbcec6da5550ceec92bca02bb6e3a4094bf9b291072cf34928b021c3a1209505",
        "batch-100-chunked": "c59e111a8a940aac6ecd82454cb3935854340b695285dad38e03d098174636e4",
        "batch-32-validation-early-stopping": "603eda8fbf91f6ee37c797afb417f0ef97f20c48382edb9c9dea7d1b02900122",
        "fit-many-3-models": "62b58f15f029f8c28d14858525023075a989f66e37c2cbd4bd33416def19c01f",
    },
}

X, Y = jaxnn.make_regression(jax.random.key(0))  # the seed's 1000 x 3 records
MODEL = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")


def _digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fit(**kw):
    settings = dict(loss="rmse", key=jax.random.key(1), progress=False, **kw)
    return jaxnn.fit(MODEL, MODEL.init(jax.random.key(2)), X, Y, **settings).params


CASES = {
    "batch-1": lambda: _fit(optimizer=jaxnn.optim.sgd(0.02), batch_size=1, epochs=3),
    "batch-100-chunked": lambda: _fit(
        optimizer=jaxnn.optim.sgd(0.5),
        batch_size=100,
        epochs=40,
        tuning=jaxnn.Tuning(epochs_per_call=7),
    ),
    "batch-32-validation-early-stopping": lambda: _fit(
        optimizer=jaxnn.optim.sgd(0.3),
        batch_size=32,
        epochs=60,
        validation=0.2,
        metrics=["r2"],
        early_stopping=jaxnn.EarlyStopping(patience=3, min_delta=1e-4),
    ),
    "fit-many-3-models": lambda: (
        jaxnn.fit_many(
            MODEL,
            None,
            X,
            Y,
            loss="rmse",
            key=jax.random.key(3),
            batch_size=50,
            epochs=5,
            progress=False,
            optimizer=jaxnn.optim.sgd([0.05, 0.2, 0.8]),
        ).params
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seed_fit_params_are_bitwise_the_pinned_ones(case):
    got = _digest(CASES[case]())
    pinned = PINNED.get((jax.__version__, _isa()))
    if pinned is None:
        pytest.skip(
            f"no hashes recorded for jax {jax.__version__} on {_isa()}; this one's {case}: {got}"
        )
    assert got == pinned[case], f"{case}: the trained params moved (sha256 {got})"


@pytest.mark.slow
def test_the_same_bits_with_the_program_store_off_on_a_miss_and_on_a_hit(tmp_path):
    """Each case in a new process: the store off, an empty store (every program
    compiled and stored), the same store again (every program loaded)."""
    script = (
        "import json, runpy, sys; m = runpy.run_path(sys.argv[1]); "
        "print(json.dumps({c: m['_digest'](f()) for c, f in m['CASES'].items()}))"
    )

    def digests(store) -> dict:
        env = {**os.environ, "JAXNN_PROGRAM_STORE": str(store), "JAXNN_COMPILATION_CACHE": "0"}
        out = subprocess.run(
            [sys.executable, "-c", script, __file__], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    off, miss, hit = digests("0"), digests(tmp_path / "store"), digests(tmp_path / "store")
    assert off == miss == hit
    pinned = PINNED.get((jax.__version__, _isa()))
    if pinned is not None:
        assert hit == pinned
