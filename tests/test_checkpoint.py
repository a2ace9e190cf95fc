import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import assert_bitwise_equal

import jaxnn
from jaxnn import checkpoint

ROOT = Path(__file__).resolve().parents[1]


def trained_state(optimizer: str):
    x, y = jaxnn.make_regression(jax.random.key(0), n=64)
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    r = jaxnn.fit(
        model,
        model.init(jax.random.key(1)),
        x,
        y,
        loss="mse",
        optimizer=optimizer,
        learning_rate=0.01,
        batch_size=8,
        epochs=2,
        key=jax.random.key(2),
        progress=False,
    )
    return model, r.state


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
def test_round_trip_of_every_state_kind(tmp_path, optimizer):
    model, state = trained_state(optimizer)
    path = checkpoint.save(tmp_path / "s.jaxnn", state, metadata={"spec": model.spec, "epoch": 2})
    fresh = jaxnn.init_state(model.init(jax.random.key(9)), jaxnn.optim.named(optimizer), jax.random.key(5))
    restored, meta = checkpoint.restore(path, fresh)
    assert_bitwise_equal(restored, state)
    assert meta == {"spec": model.spec, "epoch": 2}
    assert np.array_equal(jax.random.key_data(restored.key), jax.random.key_data(state.key))


def test_mismatched_model_says_what_differs(tmp_path):
    _, state = trained_state("sgd")
    path = checkpoint.save(tmp_path / "s.jaxnn", state)
    other = jaxnn.mlp([3, 8, 1])
    template = jaxnn.init_state(other.init(jax.random.key(0)), jaxnn.optim.named("sgd"), jax.random.key(0))
    with pytest.raises(checkpoint.CheckpointError, match=r"(?s)does not match.*\[3, 4\] float32, expected \[3, 8\]"):
        checkpoint.restore(path, template)
    adam = jaxnn.init_state(state.params, jaxnn.optim.named("adam"), jax.random.key(0))
    with pytest.raises(checkpoint.CheckpointError, match="missing from the file"):
        checkpoint.restore(path, adam)


def test_truncated_corrupted_foreign_and_newer_files(tmp_path):
    _, state = trained_state("adam")
    good = checkpoint.save(tmp_path / "good.jaxnn", state).read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "header_only": good[:20],
        "corrupted": good[:-10] + bytes(b ^ 0xFF for b in good[-10:]),
        "foreign": b"PK\x03\x04 a zip file, not a checkpoint",
        "empty": b"",
        "newer": good.replace(
            checkpoint.MAGIC + checkpoint.FORMAT_VERSION.to_bytes(4, "little"),
            checkpoint.MAGIC + (99).to_bytes(4, "little"),
            1,
        ),
    }
    expected = {
        "truncated": "truncated",
        "header_only": "truncated",
        "corrupted": "corrupted",
        "foreign": "not a jaxnn checkpoint",
        "empty": "not a jaxnn checkpoint",
        "newer": "format version 99; this jaxnn reads version 2",
    }
    for name, blob in cases.items():
        p = tmp_path / f"{name}.jaxnn"
        p.write_bytes(blob)
        with pytest.raises(checkpoint.CheckpointError, match=expected[name]):
            checkpoint.restore(p, state)
    rng = np.random.default_rng(0)
    for i in range(20):  # random bytes, with and without the magic in front
        p = tmp_path / f"random{i}.jaxnn"
        p.write_bytes((checkpoint.MAGIC if i % 2 else b"") + rng.bytes(int(rng.integers(0, 400))))
        with pytest.raises(checkpoint.CheckpointError):
            checkpoint.restore(p, state)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.restore(tmp_path / "missing.jaxnn", state)


def test_interrupted_save_leaves_the_old_file_readable(tmp_path, monkeypatch):
    _, state = trained_state("sgd")
    path = checkpoint.save(tmp_path / "s.jaxnn", state, metadata={"v": 1})

    def crash(*args):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, state, metadata={"v": 2})
    monkeypatch.undo()
    assert checkpoint.read_metadata(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.jaxnn"]  # no temporary file left behind


def test_fit_saves_every_k_epochs_keeps_n_and_resumes_exactly(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=100)
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(jax.random.key(1))
    kw = dict(
        loss="mse",
        optimizer="adam",
        learning_rate=0.01,
        batch_size=7,
        key=jax.random.key(2),
        progress=False,
        validation_split=0.2,
        early_stopping=jaxnn.EarlyStopping(patience=50),
    )
    full = jaxnn.fit(model, params, x, y, epochs=9, **kw)
    jaxnn.fit(model, params, x, y, epochs=5, checkpoint_dir=tmp_path, checkpoint_every=2, keep_checkpoints=2, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-000004.jaxnn", "epoch-000005.jaxnn"]
    resumed = jaxnn.fit(model, params, x, y, epochs=9, resume_from=tmp_path / "epoch-000004.jaxnn", **kw)
    assert_bitwise_equal(resumed.params, full.params)
    assert_bitwise_equal(resumed.state, full.state)
    np.testing.assert_array_equal(resumed.history["val_loss"], full.history["val_loss"])


def _final_params(run_dir: Path):
    files = sorted((run_dir / "checkpoints").glob("*.jaxnn"))
    meta = checkpoint.read_metadata(files[-1])
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    template = jaxnn.train._loop.start(
        jaxnn.train._loop.Plan(
            model.apply, jaxnn.losses.rmse, jaxnn.optim.named("sgd"), (), 1, 1, 1, True, 1, 1, 1, None, 1
        ),
        model.init(jax.random.key(0)),
        0.1,
        jax.random.key(0),
    )
    carry, _ = checkpoint.restore(files[-1], template)
    return carry.state.params, meta["epoch"]


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_exact(tmp_path):
    script = str(ROOT / "experiments" / "seed_network.py")
    flags = ["--batch-size", "1", "--epochs", "400", "--checkpoint-every", "5", "--no-progress"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(
        [sys.executable, script, *flags, "--out", str(tmp_path / "whole")], check=True, env=env, capture_output=True
    )
    victim = subprocess.Popen(
        [sys.executable, script, *flags, "--out", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(ckpts.glob("*.jaxnn"))) < 2:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, killed_at = _final_params(tmp_path / "killed")
    assert 0 < killed_at < 400, "the run must be killed in the middle"
    subprocess.run(
        [sys.executable, script, "--resume", str(tmp_path / "killed"), "--no-progress"],
        check=True,
        env=env,
        capture_output=True,
    )
    resumed, epoch = _final_params(tmp_path / "killed")
    whole, _ = _final_params(tmp_path / "whole")
    assert epoch == 400
    assert_bitwise_equal(resumed, whole)
