import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CompileCounter, assert_bitwise_equal

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
        optimizer=getattr(jaxnn.optim, optimizer)(0.01),
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
    fresh = jaxnn.init_state(
        model.init(jax.random.key(9)), jaxnn._optim.transform(optimizer), jax.random.key(5)
    )
    restored, meta = checkpoint.restore(path, fresh)
    assert_bitwise_equal(restored, state)
    assert meta == {"spec": model.spec, "epoch": 2}
    assert np.array_equal(jax.random.key_data(restored.key), jax.random.key_data(state.key))


def test_bfloat16_params_are_saved_resumed_and_loaded(tmp_path):
    model = jaxnn.mlp([3, 4, 1], dtype=jnp.bfloat16)
    x, y = jaxnn.make_regression(jax.random.key(0), n=32)

    def run(epochs, **kw):
        params = model.init(jax.random.key(1))
        return jaxnn.fit(
            model,
            params,
            x,
            y,
            loss="mse",
            batch_size=8,
            epochs=epochs,
            key=jax.random.key(2),
            progress=False,
            checkpoints=jaxnn.Checkpoints(tmp_path),
            **kw,
        )

    first = run(1)
    assert jax.tree.leaves(first.params)[0].dtype == jnp.bfloat16
    resumed = run(2, resume=tmp_path)
    assert resumed.epochs_run == 2
    loaded, _ = checkpoint.load_params(tmp_path, model.init(jax.random.key(1)))
    assert_bitwise_equal(loaded, resumed.params)


def test_mismatched_model_says_what_differs(tmp_path):
    _, state = trained_state("sgd")
    path = checkpoint.save(tmp_path / "s.jaxnn", state)
    other = jaxnn.mlp([3, 8, 1])
    template = jaxnn.init_state(
        other.init(jax.random.key(0)), jaxnn._optim.transform("sgd"), jax.random.key(0)
    )
    with pytest.raises(
        checkpoint.CheckpointError, match=r"(?s)does not match.*\[3, 4\] float32, expected \[3, 8\]"
    ):
        checkpoint.restore(path, template)
    adam = jaxnn.init_state(state.params, jaxnn._optim.transform("adam"), jax.random.key(0))
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


@pytest.mark.slow  # end to end; CI runs it
def test_fit_saves_every_k_epochs_keeps_n_and_resumes_exactly(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=100)
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    params = model.init(jax.random.key(1))
    kw = dict(
        loss="mse",
        optimizer=jaxnn.optim.adam(0.01),
        batch_size=7,
        key=jax.random.key(2),
        progress=False,
        validation=0.2,
        early_stopping=jaxnn.EarlyStopping(patience=50),
    )
    full = jaxnn.fit(model, params, x, y, epochs=9, **kw)
    jaxnn.fit(
        model,
        params,
        x,
        y,
        epochs=5,
        checkpoints=jaxnn.Checkpoints(tmp_path, every=2, keep=2),
        **kw,
    )
    assert sorted(p.name for p in tmp_path.glob("*.jaxnn")) == [
        "epoch-0000000004.jaxnn",
        "epoch-0000000005.jaxnn",
    ]
    resumed = jaxnn.fit(
        model, params, x, y, epochs=9, resume=tmp_path / "epoch-0000000004.jaxnn", **kw
    )
    assert_bitwise_equal(resumed.params, full.params)
    assert_bitwise_equal(resumed.state, full.state)
    np.testing.assert_array_equal(resumed.history["val_loss"], full.history["val_loss"])


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
    i = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1 :]
    for bad in (  # random, truncated, a flipped bit, padded: each on every run
        data.draw(st.binary(max_size=2000)),
        raw[: data.draw(st.integers(0, len(raw) - 1))],
        flipped,
        raw + data.draw(st.binary(min_size=1, max_size=50)),
    ):
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
    for dtype in (np.float16, np.int32):
        template = jax.tree.map(lambda p, d=dtype: p.astype(d), PARAMS)
        expect(
            checkpoint.CheckpointError,
            "does not match this model/optimizer",
            checkpoint.restore,
            saved(tmp),
            template,
        )


def _forge(raw: bytes, header: dict, nest: str | None = None) -> bytes:
    """``raw``'s payload behind ``header`` (its ``"NEST"`` replaced by ``nest``), with
    the header's checksum recomputed."""
    import hashlib
    import json

    start = len(checkpoint.MAGIC) + checkpoint._FIXED.size
    _, length, _ = checkpoint._FIXED.unpack(raw[len(checkpoint.MAGIC) : start])
    text = json.dumps(header)
    text = (text.replace('"NEST"', nest) if nest else text).encode()
    fixed = checkpoint._FIXED.pack(
        checkpoint.FORMAT_VERSION, len(text), hashlib.sha256(text).digest()
    )
    return checkpoint.MAGIC + fixed + text + raw[start + length :]


_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


HEADER_FIELDS = [  # (where, name): every field of the header a reader checks
    *(
        (None, n)
        for n in ("format_version", "arrays", "payload_bytes", "payload_sha256", "metadata")
    ),
    *(("entry", n) for n in ("path", "shape", "dtype", "prng_key")),
    *(("meta", n) for n in ("epoch", "step", "run_id", "history", "settings")),
]


@case("restore", "header")
def _(data, tmp):
    good = saved(tmp)
    raw = good.read_bytes()
    for (
        where,
        name,
    ) in HEADER_FIELDS:  # every field, every way, on every run; hypothesis draws the values
        for how in ("drop", "junk", "nest"):
            header = checkpoint.read_header(good)
            target = header
            if where == "entry":  # one array's description
                target = header["arrays"][data.draw(st.integers(0, len(header["arrays"]) - 1))]
            elif where == "meta":  # what fit reads back
                target = header["metadata"]
            depth = None
            if how == "drop" and name in target and target is not header["metadata"]:
                del target[name]
            elif how == "nest":  # deeply nested lists (json.dumps could not write them)
                target[name], depth = "NEST", data.draw(st.integers(1, 100_000))
            else:
                value = data.draw(_JUNK)
                target[name] = value if value != target.get(name) else ["forged"]
            path = tmp / "forged.jaxnn"
            path.write_bytes(_forge(raw, header, "[" * depth + "]" * depth if depth else None))
            _read_forged(path)


def _read_forged(path):
    readers = {
        "metadata": checkpoint.read_metadata,
        "restore": checkpoint.restore,
        "params": checkpoint.load_params,
    }
    for what, read in readers.items():
        try:
            out = read(path) if what == "metadata" else read(path, PARAMS)
        except (
            checkpoint.CheckpointError
        ) as e:  # a damaged field is named; any other exception is a bug
            assert "forged.jaxnn" in str(e)
        else:  # a change no reader depends on (e.g. other metadata) may pass, and never yields other arrays
            if what != "metadata":
                assert_bitwise_equal(out[0], PARAMS)


test_bad_input_gets_a_clear_error = bad_input_test("restore")


def test_only_regular_files_are_read_and_never_past_what_the_header_needs(tmp_path):
    good = saved(tmp_path)
    fifo = tmp_path / "fifo.jaxnn"
    os.mkfifo(fifo)
    with pytest.raises(
        checkpoint.CheckpointError, match="not a regular file"
    ):  # no hang waiting for a writer
        checkpoint.restore(fifo, PARAMS)
    (tmp_path / "zero.jaxnn").symlink_to("/dev/zero")
    with pytest.raises(checkpoint.CheckpointError, match="not a regular file"):
        checkpoint.restore(tmp_path / "zero.jaxnn", PARAMS)
    sparse = tmp_path / "sparse.jaxnn"
    sparse.write_bytes(good.read_bytes())
    os.truncate(sparse, 1 << 40)  # 1 TiB, no blocks: reading it whole would need 1 TiB of memory
    with pytest.raises(checkpoint.CheckpointError, match="truncated or padded"):
        checkpoint.restore(sparse, PARAMS)
    with pytest.raises(checkpoint.CheckpointError, match="not a regular file"):
        checkpoint.restore(tmp_path, PARAMS)  # a folder given where a file is expected


def test_files_follow_the_umask_and_write_errors_name_the_file(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        path = checkpoint.save(tmp_path / "s.jaxnn", PARAMS)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device \(writing .*t\.jaxnn\)") as err:
        checkpoint.save(tmp_path / "t.jaxnn", PARAMS)
    assert err.value.errno == 28 and err.value.filename == str(tmp_path / "t.jaxnn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jaxnn"]  # no temporary file left


class _Params(NamedTuple):
    params: Any


class _FitState(NamedTuple):  # the shape of what fit writes: arrays under .state.params
    state: _Params
    extra: Any = None


def test_a_forged_prng_key_flag_step_settings_or_history_is_a_checkpoint_error(tmp_path):
    x, y = jaxnn.make_regression(jax.random.key(0), n=32)
    model = jaxnn.mlp([3, 4, 1])
    kw = dict(loss="mse", key=jax.random.key(1), batch_size=8, progress=False)
    folder = tmp_path / "ck"
    jaxnn.fit(
        model,
        model.init(jax.random.key(2)),
        x,
        y,
        epochs=2,
        checkpoints=jaxnn.Checkpoints(folder),
        **kw,
    )
    good = checkpoint.latest(folder)
    raw = good.read_bytes()

    def forged(change):
        header = checkpoint.read_header(good)
        change(header)
        path = tmp_path / "forged.jaxnn"
        path.write_bytes(_forge(raw, header))
        return path

    def key_flag(h):
        next(a for a in h["arrays"] if a["dtype"] == "float32")["prng_key"] = True

    for change, match in [
        (key_flag, "prng_key is true, but a PRNG key is stored as uint32"),
        (
            lambda h: h["metadata"].update(step="3"),
            r"metadata.step must be an int in \[0, 2\*\*31 - 1\]",
        ),
        (
            lambda h: h["metadata"].update(step=2**42),
            r"metadata.step must be an int in \[0, 2\*\*31 - 1\]",
        ),
        (lambda h: h["metadata"].update(settings="sgd"), "metadata.settings must be an object"),
        *(  # numpy's comma-string formats ("01" went through ast.literal_eval: a SyntaxError)
            (lambda h, d=d: h["arrays"][0].update(dtype=d), "dtype must be a numeric dtype name")
            for d in ("0", "01", "f4,f4", "a")
        ),
    ]:
        with pytest.raises(checkpoint.CheckpointError, match=match):
            checkpoint.read_metadata(forged(change))
    for history, match in [
        ([[1.0, 2.0], [3.0, 4.0]], r"has shape \(2, 2\)"),
        ([0.5] * 8, r"has shape \(8,\)"),
    ]:
        path = forged(lambda h, v=history: h["metadata"]["history"].update(loss=v))
        with (
            CompileCounter() as c,
            pytest.raises(checkpoint.CheckpointError, match=f"history.loss {match}"),
        ):
            jaxnn.fit(model, model.init(jax.random.key(2)), x, y, epochs=3, resume=path, **kw)
        assert c.count <= 1  # refused at the start (the carry's template), not after training


def test_load_params_reads_no_more_than_a_fit_state_could_hold(tmp_path):
    state = _Params(PARAMS)
    small, big = tmp_path / "small.jaxnn", tmp_path / "big.jaxnn"
    checkpoint.save(small, _FitState(state, np.zeros(1000, np.float32)))
    assert_bitwise_equal(checkpoint.load_params(small, PARAMS)[0], PARAMS)
    checkpoint.save(
        big, _FitState(state, np.zeros(4 << 20, np.float32))
    )  # 16 MiB beside 104 bytes of params
    with pytest.raises(
        checkpoint.CheckpointError, match="more than a fit state of these params can"
    ):
        checkpoint.load_params(big, PARAMS)


def test_load_params_passes_over_a_newest_file_deleted_by_a_running_fits_clean_up(
    tmp_path, monkeypatch
):
    for epoch in (1, 2, 3):
        path = tmp_path / f"epoch-{epoch:010d}.jaxnn"
        checkpoint.save(path, _FitState(_Params(PARAMS)), metadata={"epoch": epoch})
    read = checkpoint._read

    def racing(
        path, check=None
    ):  # the writer's clean-up deletes the newest file between listing and reading
        if Path(path).name == "epoch-0000000003.jaxnn":
            Path(path).unlink()
        return read(path, check)

    monkeypatch.setattr(checkpoint, "_read", racing)
    params, meta = checkpoint.load_params(tmp_path, PARAMS)
    assert_bitwise_equal(params, PARAMS)
    assert meta["epoch"] == 2 and not (tmp_path / "epoch-0000000003.jaxnn").exists()


def test_load_params_lists_a_folder_again_when_a_writer_replaced_every_file_it_listed(
    tmp_path, monkeypatch
):
    first = tmp_path / "epoch-0000000001.jaxnn"
    checkpoint.save(first, _FitState(_Params(PARAMS)), metadata={"epoch": 1})
    read = checkpoint.read_metadata

    def racing(
        path,
    ):  # keep=1: while the folder is listed, the writer saves epoch 2 and deletes epoch 1
        if Path(path) == first and first.exists():
            later = tmp_path / "epoch-0000000002.jaxnn"
            checkpoint.save(later, _FitState(_Params(PARAMS)), metadata={"epoch": 2})
            first.unlink()
        return read(path)

    monkeypatch.setattr(checkpoint, "read_metadata", racing)
    params, meta = checkpoint.load_params(tmp_path, PARAMS)
    assert_bitwise_equal(params, PARAMS)
    assert meta["epoch"] == 2


def test_a_header_no_reader_would_take_is_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ValueError, match="more than the 1000 a reader accepts"):
        checkpoint.save(tmp_path / "a.jaxnn", {"w": np.zeros(2)}, metadata={"h": "x" * 2000})
    assert not list(tmp_path.iterdir())
    checkpoint.save(tmp_path / "b.jaxnn", {"w": np.zeros(2)}, metadata={"h": "x"})  # a small one is
    assert checkpoint.read_metadata(tmp_path / "b.jaxnn") == {"h": "x"}
