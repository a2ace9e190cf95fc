"""Checkpoints: a training state in one file, written atomically, read without pickle.

Layout: ``MAGIC``, a little-endian uint32 format version, a uint64 header length, the
header's SHA-256 (32 bytes), a JSON header (metadata, one entry per array: path,
shape, dtype, and the payload's SHA-256), then the arrays serialised with
``flax.serialization.msgpack_serialize``. Loading checks the magic, version, lengths
and both checksums before parsing anything, and
checks every array's path, shape and dtype against a template before building the
state: a truncated, corrupted, foreign or mismatched file raises ``CheckpointError``
and never yields a half-restored state. Nothing in a file is ever executed.
"""

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from jaxnn.distributed import fetch

MAGIC = b"JAXNNCKPT\x00"
FORMAT_VERSION = 2  # 2: the header has its own checksum
_FIXED = struct.Struct("<IQ32s")  # version, header length, header SHA-256
SUFFIX = ".jaxnn"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, damaged, or does not fit the state it restores."""


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(tree) -> tuple[list, list]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    entries, arrays = [], []
    for path, leaf in leaves:
        is_key = _is_key(leaf)
        arr = fetch(jax.random.key_data(leaf) if is_key else leaf)
        entries.append(
            {"path": jax.tree_util.keystr(path), "shape": list(arr.shape), "dtype": str(arr.dtype), "prng_key": is_key}
        )
        arrays.append(arr)
    return entries, arrays


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that a reader sees the old file or the new one,
    never a mix: temporary file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(path: str | os.PathLike, state: Any, *, metadata: dict | None = None) -> Path:
    """Saves a pytree of arrays (a ``TrainState``, or fit's whole loop state) to ``path``.

    Args:
      path: the file to write (``.jaxnn`` by convention); replaced atomically.
      state: any pytree of arrays; PRNG keys are stored as their key data.
      metadata: JSON-able extras (model spec, run config, epoch, history, ...).

    Returns:
      The path written.
    """
    entries, arrays = _describe(state)
    payload = serialization.msgpack_serialize({str(i): a for i, a in enumerate(arrays)})
    header = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "arrays": entries,
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "metadata": metadata or {},
        }
    ).encode()
    blob = MAGIC + _FIXED.pack(FORMAT_VERSION, len(header), hashlib.sha256(header).digest()) + header + payload
    atomic_write(path, blob)
    return Path(path)


def _read(path) -> tuple[dict, bytes]:
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a jaxnn checkpoint (it does not start with the jaxnn magic bytes)")
    fixed = len(MAGIC) + _FIXED.size
    if len(blob) < fixed:
        raise CheckpointError(f"{path} is truncated ({len(blob)} bytes)")
    version, header_len, header_digest = _FIXED.unpack(blob[len(MAGIC) : fixed])
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this jaxnn reads version {FORMAT_VERSION} "
            "(a newer file needs a newer jaxnn; an older one must be re-saved)"
        )
    if len(blob) < fixed + header_len:
        raise CheckpointError(f"{path} is truncated (its header needs {header_len} bytes)")
    raw_header = blob[fixed : fixed + header_len]
    if hashlib.sha256(raw_header).digest() != header_digest:
        raise CheckpointError(f"{path} is corrupted: its header checksum does not match")
    try:
        header = json.loads(raw_header)
        size, digest = header["payload_bytes"], header["payload_sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path} has a damaged header: {e}") from None
    payload = blob[fixed + header_len :]
    if len(payload) != size:
        raise CheckpointError(f"{path} is truncated or padded: payload of {len(payload)} bytes, expected {size}")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupted: its checksum does not match")
    return header, payload


def _payload(path, payload: bytes) -> dict:
    try:
        arrays = serialization.msgpack_restore(payload)
    except Exception as e:  # checksum passed, so this is a writer bug or a forged file
        raise CheckpointError(f"{path} has an unreadable payload: {e}") from None
    if not isinstance(arrays, dict):
        raise CheckpointError(f"{path} has an unreadable payload: not a table of arrays")
    return arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata stored in a checkpoint (after checking the file is intact)."""
    return _read(path)[0]["metadata"]


def restore(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Restores the state saved at ``path`` into the structure of ``template``.

    Args:
      path: a checkpoint file.
      template: a pytree with the expected structure, shapes and dtypes (e.g. a fresh
        state for the same model and optimizer).

    Returns:
      ``(state, metadata)``.

    Raises:
      CheckpointError: the file is missing, truncated, corrupted, from a newer format,
        or its arrays differ from the template's (the message lists the differences).
    """
    header, payload = _read(path)
    expected, _ = _describe(template)
    stored = header["arrays"]
    have = {s["path"]: s for s in stored}
    want = {e["path"]: e for e in expected}
    diffs = [f"{p}: missing from the file" for p in want if p not in have]
    diffs += [f"{p}: in the file but not expected" for p in have if p not in want]
    diffs += [
        f"{p}: file has {have[p]['shape']} {have[p]['dtype']}, expected {e['shape']} {e['dtype']}"
        for p, e in want.items()
        if p in have and (have[p]["shape"], have[p]["dtype"]) != (e["shape"], e["dtype"])
    ]
    if not diffs and [s["path"] for s in stored] != [e["path"] for e in expected]:
        diffs.append("the arrays are stored in another order than expected")
    if diffs:
        raise CheckpointError(f"{path} does not match this model/optimizer:\n  " + "\n  ".join(diffs[:10]))
    arrays = _payload(path, payload)
    try:
        leaves = [np.asarray(arrays[str(i)]) for i in range(len(stored))]
    except Exception as e:  # checksum passed, so this is a writer bug or a forged file
        raise CheckpointError(f"{path} has an unreadable payload: {e}") from None
    for leaf, s in zip(leaves, stored, strict=True):
        if list(leaf.shape) != s["shape"] or str(leaf.dtype) != s["dtype"]:
            raise CheckpointError(f"{path}: array {s['path']} does not match its own header")
    restored = [
        jax.random.wrap_key_data(a, impl=jax.random.key_impl(t)) if s["prng_key"] else a
        for a, s, t in zip(leaves, stored, jax.tree.leaves(template), strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), restored), header["metadata"]


def latest(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else the newest checkpoint in the folder."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.glob(f"*{SUFFIX}")) if path.is_dir() else []
    if not found:
        raise CheckpointError(f"no checkpoint ({SUFFIX} file) in {path}")
    return found[-1]


class Saver:
    """Used by ``fit`` and ``fit_many``: saves the loop state every ``every`` epochs
    (and at the end), keeping the newest ``keep`` files ``epoch-000010.jaxnn`` in ``folder``."""

    def __init__(self, folder, every: int, keep: int, spec: dict | None, epochs: int, config: dict | None = None):
        self.folder, self.every, self.keep, self.epochs = Path(folder), every, keep, epochs
        self.metadata = {"spec": spec, "config": config or {}}

    @classmethod
    def for_run(cls, checkpoints, epochs: int, spec: dict | None) -> "Saver | None":
        """The saver for a run's (checked) ``jaxnn.Checkpoints``; ``None`` without one,
        and in every process but process 0 (the one writer)."""
        if checkpoints is None or jax.process_index() != 0:
            return None
        every = checkpoints.every or epochs
        return cls(checkpoints.dir, every, checkpoints.keep, spec, epochs, checkpoints.metadata)

    def after_chunk(self, carry, epoch: int, history: dict, stopped: bool) -> None:
        if epoch % self.every and epoch < self.epochs and not stopped:
            return
        records = {k: np.asarray(v).tolist() for k, v in history.items() if k != "epoch"}
        meta = {**self.metadata, "epoch": epoch, "history": records}
        save(self.folder / f"epoch-{epoch:06d}{SUFFIX}", carry, metadata=meta)
        for old in sorted(self.folder.glob(f"epoch-*{SUFFIX}"))[: -self.keep]:
            old.unlink()


def restore_carry(path, template):
    """Restores the loop state of ``fit`` or ``fit_many`` from a checkpoint file or
    folder; returns ``(carry, history)``."""
    carry, meta = restore(latest(path), template)
    return carry, meta.get("history", {})


def load_params(path: str | os.PathLike, params: Any) -> tuple[Any, dict]:
    """The trained parameters in a checkpoint that ``fit`` (or ``fit_many``) wrote.

    Args:
      path: a checkpoint file, or a folder (its newest checkpoint).
      params: parameters of the same model (e.g. ``model.init(key)``), for their
        structure, shapes and dtypes (stacked on a leading axis for ``fit_many``).

    Returns:
      ``(params, metadata)``: the checkpoint's ``state.params`` and its metadata
      (``epoch``, ``history``, ``config``, ...).

    Raises:
      CheckpointError: as :func:`restore`, or the file holds no fit state.
    """
    path = latest(path)
    header, payload = _read(path)
    prefix = ".state.params"
    stored = [s for s in header["arrays"] if s["path"].startswith(prefix)]
    if not stored:
        raise CheckpointError(f"{path} holds no fit state (no arrays under {prefix})")
    expected, _ = _describe(params)
    got = [(s["path"][len(prefix) :], s["shape"], s["dtype"]) for s in stored]
    want = [(e["path"], e["shape"], e["dtype"]) for e in expected]
    if got != want:
        raise CheckpointError(f"{path}: its params {got[:4]} do not match the given params {want[:4]}")
    index = {s["path"]: i for i, s in enumerate(header["arrays"])}
    arrays = _payload(path, payload)
    leaves = [np.asarray(arrays[str(index[s["path"]])]) for s in stored]
    return jax.tree.unflatten(jax.tree.structure(params), leaves), header["metadata"]
