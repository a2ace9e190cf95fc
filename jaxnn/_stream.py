"""Training on inputs bigger than memory (private): ``fit`` with ``x`` a NumPy memmap
(``np.load(path, mmap_mode="r")``, ``np.memmap``) or any 2-D row-indexable array
that is not a NumPy array (an h5py or zarr dataset, a Grain ``MapDataset`` of rows).

Each epoch's batch order is the in-memory loop's own: the same global permutation,
padding and mask, computed on the device and fetched. The host reads the rows of a
chunk of steps (sorted by position in the file, so a memmap is read forwards) and a
compiled scan trains on them, while the host reads the next chunk: JAX dispatches
asynchronously, so reading chunk k+1 overlaps training on chunk k (at most two chunks
are in flight). After the epoch's last chunk a second program does what the
in-memory loop does at an epoch's end (training loss, NaN guard, validation, metrics,
early stopping). The step is the same function, so a streamed fit equals the
in-memory fit bit for bit.

Rows are checked as they are read, every epoch: a NaN or inf raises naming its row
and column, with no separate pass over the file. A memmap's rows are read with
``pread`` (runs of consecutive rows in one call), not through its mapping: the
process holds a few chunks, not the pages of the file it has read. Targets, sample
weights and validation data are in memory (they are small next to ``x``). Over
several devices a chunk is a global array split along each batch's rows, and a
process reads only the rows of its own devices (every process opens the whole file).
"""

import mmap
import os
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxnn import _loop, _programs, _records
from jaxnn.distributed import fetch
from jaxnn.options import Stop

CHUNK_BYTES = 32 << 20  # rows read per chunk: about this many bytes of float32


def _is_grain(x) -> bool:
    return (
        type(x).__module__.split(".")[0] == "grain"
        and hasattr(x, "__len__")
        and hasattr(x, "__getitem__")
    )


def is_stream(x) -> bool:
    """Whether ``fit`` streams ``x`` from disk instead of holding it in memory. A tensor
    of another framework (torch, cupy: anything with ``__dlpack__``) is in memory, and
    so is a scipy sparse matrix (refused by the data checks, with what to do)."""
    if isinstance(x, np.memmap) or _is_grain(x):
        return True
    if isinstance(x, np.ndarray | jax.Array | list | tuple) or not hasattr(x, "__getitem__"):
        return False
    if hasattr(x, "__dlpack__") or type(x).__module__.startswith("scipy.sparse"):
        return False
    return len(getattr(x, "shape", ())) == 2 and hasattr(x, "dtype")


class Source:
    """The rows of a streamed ``x``: float32 rows by index, checked as they are read.
    A Grain dataset's element ``i`` is row ``i``, a 1-D array of the features."""

    def __init__(self, x, name: str = "x"):
        self.grain = _is_grain(x)
        if self.grain:
            first = np.asarray(x[0]) if len(x) else np.zeros((0,))
            shape, dtype = (len(x), *first.shape), first.dtype
        else:
            shape, dtype = tuple(x.shape), np.dtype(x.dtype)
        if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(
                f"{name} must be 2-D (samples, features) with rows and columns, got shape {shape}"
            )
        if dtype.kind == "b" or not (
            np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
        ):
            raise TypeError(f"{name} must hold numbers, got dtype {dtype}")
        self.x, self.name, self.n, self.features, self.shape = x, name, shape[0], shape[1], shape
        self.dtype = dtype
        self._file = _file_rows(x)
        if self._file is not None:
            try:
                self._fd = os.open(self._file[0], os.O_RDONLY)
            except OSError:  # the file is gone: the mapping still holds its data
                self._file = None
        if self._file is not None:
            st = os.fstat(self._fd)
            # replaced since np.load: read the mapping
            if _mapped_file(x) not in (None, (st.st_dev, st.st_ino)):
                os.close(self._fd)
                self._file = None
            else:
                weakref.finalize(self, os.close, self._fd)

    def sample(self) -> np.ndarray:
        """The first row, ``(1, features)`` float32 (for shapes and dtypes)."""
        return self.rows(np.zeros(1, np.int64))

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` as float32 ``(len(idx), features)``, each distinct row read
        once, in file order."""
        unique, inverse = np.unique(idx, return_inverse=True)
        block = self._read(unique)
        out = block.astype(np.float32)[inverse]
        if not np.isfinite(out).all():
            r, c = np.argwhere(~np.isfinite(out))[0]
            raise ValueError(
                f"{self.name} has a non-finite value (NaN or inf, or beyond float32's range) at row {int(idx[r])}, "
                f"column {int(c)}: {block[inverse[r], c]!r}; expected finite numbers"
            )
        return out

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted, distinct) in the source's dtype."""
        if self.grain:
            return np.stack([self._row(int(i), np.asarray(self.x[int(i)])) for i in rows])
        if self._file is None:
            block = np.asarray(self.x[rows])
            if block.shape != (len(rows), self.features):
                raise ValueError(
                    f"{self.name}[rows] gave shape {block.shape} for {len(rows)} rows; expected "
                    f"({len(rows)}, {self.features}): one row of {self.features} features per index"
                )
            return block
        # A memmap's rows are read with pread, not through the mapping: pages touched through
        # a mapping count toward the process's memory (a fault maps up to a whole large folio
        # of the page cache; 10,000 random rows of a 2 GB file mapped all of it).
        _, first, stride = self._file
        width = self.features * self.dtype.itemsize
        out = np.empty((len(rows), self.features), self.dtype)
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)  # runs of consecutive rows
        ends = [*starts[1:], len(rows)]
        for a, b in zip(starts, ends, strict=True):
            if stride == width:  # a run is one read
                view = memoryview(out[a:b]).cast("B")
                got = os.preadv(self._fd, [view], first + int(rows[a]) * stride)
            else:
                got = sum(
                    os.preadv(
                        self._fd, [memoryview(out[i]).cast("B")], first + int(rows[i]) * stride
                    )
                    for i in range(a, b)
                )
            if got != (b - a) * width:
                raise OSError(f"{self._file[0]}: short read (the file changed while training?)")
        return out

    def _row(self, i: int, row: np.ndarray) -> np.ndarray:
        if row.shape != (self.features,):
            raise ValueError(
                f"{self.name} row {i} has shape {row.shape}; expected ({self.features},), as row 0 has "
                f"(every element of a streamed dataset is one row of {self.features} features)"
            )
        return row


def _file_rows(x):
    """``(path, byte position of row 0, bytes from row to row)`` when ``x`` is a memmap
    whose rows each lie contiguously in its file, else ``None``."""
    mm = getattr(x, "_mmap", None)
    if not isinstance(x, np.memmap) or mm is None or not getattr(x, "filename", None):
        return None
    if x.strides[1] != x.itemsize or x.strides[0] < x.shape[1] * x.itemsize:
        return None
    mapped_at = np.frombuffer(mm, np.uint8).ctypes.data  # the mapping starts at offset rounded down
    map_offset = x.offset - x.offset % mmap.ALLOCATIONGRANULARITY
    return x.filename, map_offset + x.ctypes.data - mapped_at, x.strides[0]


def _mapped_file(x: np.memmap) -> tuple[int, int] | None:
    """``(device, inode)`` of the file ``x`` maps, from ``/proc/self/maps`` (Linux), or
    ``None`` where that is not known. A file replaced after ``np.load`` (an atomic
    rewrite) keeps its name but not its inode: ``x`` still maps the old one."""
    address = np.frombuffer(x._mmap, np.uint8).ctypes.data
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                span, _, _, dev, inode, *_ = line.split() + [""]
                low, high = (int(v, 16) for v in span.split("-"))
                if low <= address < high:
                    major, minor = (int(v, 16) for v in dev.split(":"))
                    return os.makedev(major, minor), int(inode)
    except (OSError, ValueError):
        return None
    return None


def chunk_bounds(plan: _loop.Plan, features: int, last: int) -> list[int]:
    """Where the chunks of steps ``[0, last)`` start, then ``last``: about
    ``CHUNK_BYTES`` of rows each, a multiple of the scan's unroll ``u``. A chunk of
    ``u + 1 .. 2u - 1`` steps (one unrolled trip and a remainder) is merged into the
    one before: XLA inlines such a scan and fuses its steps differently, which
    changed the last bit of some params against the in-memory loop (CPU, u = 2)."""
    if last <= 0:  # nothing to read: a replay of an epoch whose first step went non-finite
        return [0]
    u = plan.unroll
    k = max(u, CHUNK_BYTES // (4 * features * plan.batch_size) // u * u)
    bounds = [*range(0, last, k), last]
    tail = bounds[-1] - bounds[-2]
    if len(bounds) > 2 and u < tail < 2 * u:
        del bounds[-2]
    return bounds


def _update(plan: _loop.Plan, data):
    """``update(state, (rows, idx, *weights)) -> (state, loss)``: the in-memory loop's
    step on a batch of pre-read rows (``idx``: their indices, for the targets)."""
    step_fn = _loop.make_train_step(plan.apply_fn, plan.loss_fn, plan.tx)
    y = data.y

    def update(s, batch):
        x_b, i, *m = batch
        s, metrics = step_fn(s, _split(plan, (x_b, y[i], *m)))
        return s, metrics["loss"]

    return update


def _split(plan: _loop.Plan, batch: tuple) -> tuple:
    """Over several devices, each takes its rows of the batch (as the in-memory loop's step)."""
    if plan.batch_sharding is None:
        return batch
    return tuple(jax.lax.with_sharding_constraint(a, plan.batch_sharding) for a in batch)


def _inputs(data, xb, idx, mask) -> tuple:
    weights = _loop.batch_weights(data.w, idx, mask)
    return (xb, idx) if weights is None else (xb, idx, weights)


def _steps(plan: _loop.Plan, state, xb, idx, mask, data):
    """``len(xb)`` updates on pre-read batches ``xb`` (rows ``idx`` of the data)."""
    return jax.lax.scan(
        _update(plan, data), state, _inputs(data, xb, idx, mask), unroll=plan.unroll
    )


def _replay_steps(plan: _loop.Plan, state, xb, idx, mask, data, j0, first_bad):
    """:func:`_steps` taking only the updates the in-memory replay takes (see
    ``jaxnn._loop.replay``); ``j0`` is the chunk's first step in its epoch."""
    update = _update(plan, data)

    def step(s, xs):
        j, batch = xs
        new, _ = update(s, batch)
        take = (j < first_bad - 1) | ((j == first_bad - 1) & _loop.all_finite(new.params))
        return _loop.select(take, new, s), None

    return jax.lax.scan(step, state, (j0 + jnp.arange(len(xb)), _inputs(data, xb, idx, mask)))[0]


def _end(plan: _loop.Plan, carry: _loop.Carry, end, losses, mask, data):
    carry, train_loss, first_bad = _loop.epoch_result(plan, carry, end, losses, mask)
    carry, record = _records.epoch_end(plan, data, carry, train_loss)
    return carry, record, (carry.state.epoch, carry.stop), first_bad


epoch_order = _programs.jit("stream.order", _loop.epoch_batches)
train_steps = _programs.jit("stream.steps", _steps, donate_argnums=1)
replay_steps = _programs.jit("stream.replay", _replay_steps, donate_argnums=1)
end_epoch = _programs.jit("stream.end", _end)


class Streamed(NamedTuple):
    """The ``jaxnn._loop.Runner`` protocol for a fit streamed from disk: ``chunks(carry,
    data, epochs, done)`` yields one ``Chunk`` per epoch, read a chunk of steps at a time. ``saver`` (a
    ``jaxnn._saver.Saver`` or None) also saves within epochs (``every_steps``),
    with ``history``'s epochs; ``progress`` resumes within the first epoch:
    ``(start, losses, step)`` (see ``jaxnn._saver.restore_carry``)."""

    plan: _loop.Plan
    source: Source
    saver: Any = None
    history: Any = None
    progress: Any = None
    placement: Any = None  # jaxnn._placement's OneDevice or DataParallel

    def _chunks(self, idx, mask, last: int):
        """``(j0, rows idx, mask)`` of the chunks of steps ``[0, last)``."""
        bounds = chunk_bounds(self.plan, self.source.features, last)
        for j0, j1 in zip(bounds[:-1], bounds[1:], strict=False):
            yield j0, idx[j0:j1], None if mask is None else mask[j0:j1]

    def _read(self, rows: np.ndarray):
        """The inputs ``(steps, rows, features)`` of a chunk. Over several devices a
        global array split along the rows: each process reads only its devices' rows."""
        shape = (*rows.shape, self.source.features)
        if self.placement is None or self.placement.batch is None:
            return self.source.rows(rows.reshape(-1)).reshape(shape)
        sharding = NamedSharding(self.placement.mesh, PartitionSpec(None, "data"))
        mine = [index[1] for index in sharding.addressable_devices_indices_map(shape).values()]
        a, b = min(s.indices(shape[1])[0] for s in mine), max(s.indices(shape[1])[1] for s in mine)
        local = self.source.rows(rows[:, a:b].reshape(-1)).reshape(shape[0], b - a, shape[2])
        return jax.make_array_from_process_local_data(sharding, local, shape)

    def chunks(self, carry, data, epochs: int, done: int):
        plan, resumed = self.plan, self.progress
        for completed in range(done, epochs):
            idx, mask = fetch(epoch_order(plan, carry.state.key, carry.state.epoch))
            if resumed is None:  # the epoch's first state: its end and any replay need it
                start, losses, done_steps = jax.tree.map(jnp.copy, carry.state), [], 0
            else:  # saved within this epoch: its first state, the losses so far, the updates done
                start, saved, done_steps = resumed
                losses, resumed = [jnp.asarray(saved)], None
            state, pending = carry.state, None
            parts = [p for p in self._chunks(idx, mask, plan.n_batches) if p[0] >= done_steps]
            for c, (j0, rows, m) in enumerate(parts):
                xb = self._read(rows) if pending is None else pending
                # at most two chunks in flight: reading is faster than training, and each
                # queued call holds its chunk in device memory
                if c >= 2:
                    losses[-2].block_until_ready()
                # returns at once: JAX dispatches async
                state, loss = train_steps(plan, state, xb, rows, m, data)
                losses.append(loss)
                # overlaps that update
                pending = self._read(parts[c + 1][1]) if c + 1 < len(parts) else None
                j1 = j0 + len(rows)
                if self.saver is not None and j1 < plan.n_batches:
                    progress = {
                        "carry": carry._replace(state=state),
                        "start": start,
                        "losses": jnp.concatenate(losses),
                    }
                    self.saver.within_epoch(progress, completed, j1, j0, self.history.arrays())
            carry = carry._replace(state=start)  # its own state went into the first chunk (donated)
            carry, record, status, first_bad = end_epoch(
                plan, carry, state, jnp.concatenate(losses), mask, data
            )
            record, (epoch, stop), bad = fetch((record, status, first_bad))  # one sync per epoch
            if bad >= 0:
                carry = self._replay(carry, start, idx, mask, data, int(bad))
            record.pop("ran")
            yield _loop.Chunk(
                carry, {k: v[None] for k, v in record.items()}, np.ones(1, bool), epoch, stop
            )
            if stop != Stop.COMPLETED:
                return

    def _replay(self, carry, start, idx, mask, data, first_bad: int):
        """The in-memory replay (``jaxnn._loop.replay``), reading the epoch's rows again."""
        state, bad = start, np.int32(first_bad)
        for j0, rows, m in self._chunks(idx, mask, min(first_bad, self.plan.n_batches)):
            state = replay_steps(
                self.plan, state, self._read(rows), rows, m, data, np.int32(j0), bad
            )
        return carry._replace(state=state._replace(epoch=carry.state.epoch))


def check_plan_inputs(source: Source, *, validation, metrics) -> None:
    """What a streamed fit does not take, refused with what to do instead."""
    if validation is not None and not isinstance(validation, tuple | list):
        raise ValueError(
            f"with a streamed {source.name}, pass validation=(x_val, y_val) in memory, not a fraction of the data"
        )
    if metrics and validation is None:
        raise ValueError(
            f"with a streamed {source.name}, metrics are computed on validation data: pass validation=(x_val, y_val)"
        )


def predict_rows(source: Source, run_chunk, batch_size: int) -> np.ndarray:
    """``run_chunk(x_rows) -> predictions`` over the rows of ``source``, a chunk at a time."""
    rows = max(batch_size, (CHUNK_BYTES // (4 * source.features)) // batch_size * batch_size)
    out = [
        np.asarray(run_chunk(source.rows(np.arange(i, min(i + rows, source.n)))))
        for i in range(0, source.n, rows)
    ]
    return np.concatenate(out)
