"""Streaming fit: x read from disk (a memmap, any row-indexable array, a Grain dataset)
trains bit for bit as the same data in memory."""

import os

import jax
import numpy as np
import pytest
from helpers import assert_bitwise_equal

import jaxnn
from jaxnn import _stream

MODEL = jaxnn.mlp([6, 16, 3])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((203, 6)).astype(np.float32)  # 203: the last batch is padded and masked
    y = (x[:, :3].argmax(axis=1)).astype(np.int32)
    path = tmp_path_factory.mktemp("stream") / "x.npy"
    np.save(path, x)
    return x, y, path


class OnDisk:
    """A row-indexable array that is not a NumPy array (as an h5py or zarr dataset is)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype

    def __getitem__(self, idx):
        return self.a[idx]


def run(x, y, **kw):
    kw = {"loss": "softmax_cross_entropy", "key": jax.random.key(1), "batch_size": 16, "epochs": 4,
          "optimizer": jaxnn.optim.adam(0.01), "progress": False, **kw}  # fmt: skip
    return jaxnn.fit(MODEL, MODEL.init(jax.random.key(0)), x, y, **kw)


@pytest.mark.parametrize(
    "shuffle", [pytest.param(True, marks=pytest.mark.slow), False]
)  # one in the quick tier
def test_memmap_trains_bitwise_as_in_memory(data, monkeypatch, shuffle):
    x, y, path = data
    monkeypatch.setattr(
        _stream, "CHUNK_BYTES", 3 * 16 * 6 * 4
    )  # 13 steps in chunks of 2 (the unroll's multiple)
    xv, yv = x[:40], y[:40]
    kw = dict(shuffle=shuffle, validation=(xv, yv), metrics=["accuracy"],
              early_stopping=jaxnn.EarlyStopping("val_loss", patience=50))  # fmt: skip
    memory = run(x, y, **kw)
    streamed = run(np.load(path, mmap_mode="r"), y, **kw)
    assert_bitwise_equal(streamed.params, memory.params)
    assert_bitwise_equal(streamed.state.opt_state, memory.state.opt_state)
    assert streamed.history.keys() == memory.history.keys()
    for k in memory.history:
        assert_bitwise_equal(streamed.history[k], memory.history[k])
    assert_bitwise_equal(run(OnDisk(x), y, **kw).params, memory.params)


def test_a_grain_dataset_of_rows_trains_as_in_memory(data):
    grain = pytest.importorskip("grain")
    x, y, _ = data
    rows = grain.MapDataset.source(list(x))  # element i: row i of x
    assert_bitwise_equal(run(rows, y, shuffle=True).params, run(x, y, shuffle=True).params)
    assert_bitwise_equal(np.asarray(jaxnn.predict(MODEL, run(x, y).params, rows)),
                         np.asarray(jaxnn.predict(MODEL, run(x, y).params, x)))  # fmt: skip


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_sample_weights_and_a_run_that_goes_non_finite_stream_alike(data, monkeypatch):
    x, y, path = data
    monkeypatch.setattr(_stream, "CHUNK_BYTES", 4 * 16 * 6 * 4)
    w = np.linspace(0.5, 2, len(x)).astype(np.float32)
    kw = dict(sample_weight=w, optimizer=jaxnn.optim.sgd(1e4), epochs=6)  # diverges within the run
    np.save(path.with_name("big.npy"), x * 100)
    with pytest.warns(RuntimeWarning, match="the loss became non-finite"):
        memory = run(x * 100, y, **kw)
    with pytest.warns(RuntimeWarning, match="the loss became non-finite"):
        streamed = run(np.load(path.with_name("big.npy"), mmap_mode="r"), y, **kw)
    assert memory.stop_reason == streamed.stop_reason == jaxnn.Stop.NON_FINITE_LOSS
    assert_bitwise_equal(streamed.params, memory.params)
    assert_bitwise_equal(streamed.history["loss"], memory.history["loss"])


def test_a_streamed_fit_that_diverges_on_an_epochs_first_step_stops_as_in_memory(data):
    # One batch per epoch: a divergence is always on the epoch's first step (it crashed
    # with an IndexError, while the in-memory NaN guard stopped cleanly).
    x, y, path = data
    np.save(path.with_name("huge.npy"), x * 1e6)
    kw = dict(optimizer=jaxnn.optim.sgd(1e6), batch_size=len(x), epochs=3)
    with pytest.warns(RuntimeWarning, match="the loss became non-finite"):
        memory = run(x * 1e6, y, **kw)
    with pytest.warns(RuntimeWarning, match="the loss became non-finite"):
        streamed = run(np.load(path.with_name("huge.npy"), mmap_mode="r"), y, **kw)
    assert memory.stop_reason == streamed.stop_reason == jaxnn.Stop.NON_FINITE_LOSS
    assert_bitwise_equal(streamed.params, memory.params)


def test_streamed_run_resumes_from_its_checkpoint_bitwise(data, tmp_path):
    _, y, path = data
    mm = np.load(path, mmap_mode="r")
    whole = run(mm, y, epochs=6)
    run(mm, y, epochs=3, checkpoints=jaxnn.Checkpoints(tmp_path / "ck", every=1))
    resumed = run(
        mm,
        y,
        epochs=6,
        checkpoints=jaxnn.Checkpoints(tmp_path / "ck", every=1),
        resume=tmp_path / "ck",
    )
    assert_bitwise_equal(resumed.params, whole.params)
    assert_bitwise_equal(resumed.history["loss"], whole.history["loss"])


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_a_run_killed_within_an_epoch_resumes_from_that_step_bitwise(data, tmp_path, monkeypatch):
    _, y, path = data
    monkeypatch.setattr(_stream, "CHUNK_BYTES", 2 * 16 * 6 * 4)  # 13 steps an epoch, in chunks of 2
    mm = np.load(path, mmap_mode="r")
    kw = dict(
        epochs=4, validation=(mm[:40], y[:40]), early_stopping=jaxnn.EarlyStopping(patience=9)
    )
    whole = run(mm, y, **kw)
    ck = jaxnn.Checkpoints(tmp_path / "ck", every=1, every_steps=5, keep=10)
    calls, real = [0], _stream.train_steps

    def dies_in_epoch_3(*a):  # 7 chunks an epoch: the 18th is within the third epoch
        calls[0] += 1
        if calls[0] == 18:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(_stream, "train_steps", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(mm, y, checkpoints=ck, **kw)
    monkeypatch.setattr(_stream, "train_steps", real)
    newest = jaxnn.checkpoint.latest(tmp_path / "ck").name
    assert (
        newest == "epoch-0000000002-step-0000000006.jaxnn"
    )  # after 3 chunks of epoch 3 (steps 0-5)
    resumed = run(mm, y, checkpoints=ck, resume=tmp_path / "ck", **kw)
    assert_bitwise_equal(resumed.params, whole.params)
    for k in whole.history:
        assert_bitwise_equal(resumed.history[k], whole.history[k])
    with pytest.raises(
        ValueError, match="every_steps saves within an epoch of a fit that streams x"
    ):
        run(np.asarray(mm), y, checkpoints=jaxnn.Checkpoints(tmp_path / "other", every_steps=5))


def test_a_nan_row_is_named_with_its_column(data, tmp_path):
    x, y, _ = data
    bad = x.copy()
    bad[150, 4] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="x has a non-finite value .* at row 150, column 4"):
        run(np.load(tmp_path / "bad.npy", mmap_mode="r"), y)


def test_predict_and_evaluate_read_a_memmap_in_chunks(data, monkeypatch):
    x, y, path = data
    monkeypatch.setattr(_stream, "CHUNK_BYTES", 64 * 6 * 4)
    params = run(x, y).params
    mm = np.load(path, mmap_mode="r")
    assert_bitwise_equal(np.asarray(jaxnn.predict(MODEL, params, mm, batch_size=32)),
                         np.asarray(jaxnn.predict(MODEL, params, x, batch_size=32)))  # fmt: skip
    kw = dict(loss="softmax_cross_entropy", metrics=["accuracy"], batch_size=32)
    assert jaxnn.evaluate(MODEL, params, mm, y, **kw) == jaxnn.evaluate(MODEL, params, x, y, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(validation=0.2), r"pass validation=\(x_val, y_val\) in memory"),
        (dict(metrics=["accuracy"]), "metrics are computed on validation data"),
    ],
)
def test_what_a_streamed_fit_refuses(data, kw, match):
    _, y, path = data
    with pytest.raises(ValueError, match=match):
        run(np.load(path, mmap_mode="r"), y, **kw)
    with pytest.raises(ValueError, match="y must have shape"):
        run(np.load(path, mmap_mode="r"), y[:10])
    with pytest.raises(TypeError, match="fit_many takes x in memory"):
        many = dict(
            loss="softmax_cross_entropy",
            key=jax.random.key(0),
            optimizer=jaxnn.optim.sgd([0.1, 0.2]),
        )
        jaxnn.fit_many(MODEL, None, np.load(path, mmap_mode="r"), y, progress=False, **many)


def test_rows_of_the_wrong_shape_are_named_with_the_source_and_the_row(data):
    x, y, _ = data
    grain = pytest.importorskip("grain")
    rows = [r for r in x]
    rows[5] = rows[5][:4]
    with pytest.raises(ValueError, match=r"x row 5 has shape \(4,\); expected \(6,\)"):
        run(grain.MapDataset.source(rows), y, epochs=1)

    class Ragged(OnDisk):
        def __getitem__(self, idx):
            return self.a[idx][:, :5]

    with pytest.raises(
        ValueError, match=r"x\[rows\] gave shape \(\d+, 5\) for \d+ rows; expected \(\d+, 6\)"
    ):
        run(Ragged(x), y, epochs=1)


def test_tensors_of_other_frameworks_train_in_memory_and_sparse_matrices_are_refused(data):
    import scipy.sparse

    x, y, _ = data

    class Tensor(OnDisk):  # what torch and cupy tensors look like to jaxnn: DLPack and __array__
        def __dlpack__(self, *args, **kwargs):
            return self.a.__dlpack__(*args, **kwargs)

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    assert not _stream.is_stream(Tensor(x))
    assert_bitwise_equal(run(Tensor(x), y, epochs=1).params, run(x, y, epochs=1).params)
    with pytest.raises(
        TypeError, match=r"x is a scipy sparse matrix; pass it dense \(x.toarray\(\)\)"
    ):
        run(scipy.sparse.csr_matrix(x), y, epochs=1)


@pytest.mark.slow  # a quick-tier sibling covers the same path
def test_a_memmap_whose_file_was_replaced_trains_on_what_it_maps(data, tmp_path):
    # An atomic rewrite after np.load keeps the name but not the file: fit(mm) must
    # equal fit(np.asarray(mm)), not train on the new file.
    x, y, _ = data
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    np.save(tmp_path / "new.npy", x[::-1] * 3)
    os.replace(tmp_path / "new.npy", path)
    assert_bitwise_equal(run(mm, y, epochs=2).params, run(np.asarray(mm), y, epochs=2).params)
