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
    fresh = jaxnn.init_state(model.init(jax.random.key(9)), jaxnn.optim.transform(optimizer), jax.random.key(5))
    restored, meta = checkpoint.restore(path, fresh)
    assert_bitwise_equal(restored, state)
    assert meta == {"spec": model.spec, "epoch": 2}
    assert np.array_equal(jax.random.key_data(restored.key), jax.random.key_data(state.key))


def test_mismatched_model_says_what_differs(tmp_path):
    _, state = trained_state("sgd")
    path = checkpoint.save(tmp_path / "s.jaxnn", state)
    other = jaxnn.mlp([3, 8, 1])
    template = jaxnn.init_state(other.init(jax.random.key(0)), jaxnn.optim.transform("sgd"), jax.random.key(0))
    with pytest.raises(checkpoint.CheckpointError, match=r"(?s)does not match.*\[3, 4\] float32, expected \[3, 8\]"):
        checkpoint.restore(path, template)
    adam = jaxnn.init_state(state.params, jaxnn.optim.transform("adam"), jax.random.key(0))
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
        validation=0.2,
        early_stopping=jaxnn.EarlyStopping(patience=50),
    )
    full = jaxnn.fit(model, params, x, y, epochs=9, **kw)
    jaxnn.fit(model, params, x, y, epochs=5, checkpoints=jaxnn.Checkpoints(tmp_path, every=2, keep=2), **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-000004.jaxnn", "epoch-000005.jaxnn"]
    resumed = jaxnn.fit(model, params, x, y, epochs=9, resume=tmp_path / "epoch-000004.jaxnn", **kw)
    assert_bitwise_equal(resumed.params, full.params)
    assert_bitwise_equal(resumed.state, full.state)
    np.testing.assert_array_equal(resumed.history["val_loss"], full.history["val_loss"])


def _final_params(run_dir: Path):
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params, meta = checkpoint.load_params(run_dir / "checkpoints", model.init(jax.random.key(0)))
    return params, meta["epoch"]


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


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import PARAMS, K, bad_input_test, case, expect  # noqa: E402

# checkpoint.restore -------------------------------------------------------------------


def saved(tmp: Path) -> Path:
    path = tmp / "good.jaxnn"
    if not path.exists():
        checkpoint.save(path, PARAMS, metadata={"note": "hardened"})
    return path


@case("restore", "bytes")
def _(data, tmp):
    good = saved(tmp)
    raw = good.read_bytes()
    how = data.draw(st.sampled_from(["random", "truncated", "flipped", "padded"]))
    if how == "random":
        bad = data.draw(st.binary(max_size=2000))
    elif how == "truncated":
        bad = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flipped":
        i = data.draw(st.integers(0, len(raw) - 1))
        bad = raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1 :]
    else:
        bad = raw + data.draw(st.binary(min_size=1, max_size=50))
    path = tmp / "bad.jaxnn"
    path.write_bytes(bad)
    expect(
        checkpoint.CheckpointError,
        "not a jaxnn checkpoint|truncated|corrupted|padded|header|version",
        checkpoint.restore,
        path,
        PARAMS,
    )
    assert good.read_bytes() == raw  # the good file is untouched


@case("restore", "length")
def _(data, tmp):
    width = data.draw(st.integers(1, 9).filter(lambda w: w != 4))
    expect(
        checkpoint.CheckpointError,
        "does not match this model/optimizer",
        checkpoint.restore,
        saved(tmp),
        jaxnn.mlp([3, width, 2]).init(K),
    )


@case("restore", "dtype")
def _(data, tmp):
    template = jax.tree.map(lambda p: p.astype(data.draw(st.sampled_from([np.float16, np.int32]))), PARAMS)
    expect(checkpoint.CheckpointError, "does not match this model/optimizer", checkpoint.restore, saved(tmp), template)


test_bad_input_gets_a_clear_error = bad_input_test("restore")
