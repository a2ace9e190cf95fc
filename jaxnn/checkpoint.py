"""Checkpoints: a training state in one file, written atomically, read without pickle,
and checkpoint folders that belong to one run.

Layout: ``MAGIC``, a little-endian uint32 format version, a uint64 header length, the
header's SHA-256 (32 bytes), a JSON header (metadata, one entry per array: path,
shape, dtype, and the payload's SHA-256), then the arrays serialised with
``flax.serialization.msgpack_serialize``.

Reading trusts nothing in a file: only regular files are opened (never a FIFO, a
device or a directory); the header's length is checked against the file's size and
its checksum before it is parsed; every header field is checked for its type and
range (a damaged field raises ``CheckpointError`` naming it); the payload's size must
match what the header's arrays need before a byte of it is read; and restoring checks
every array's path, shape and dtype against a template before reading the payload. A
truncated, corrupted, forged, foreign or mismatched file raises ``CheckpointError``
and never yields a half-restored state. Nothing in a file is ever executed.

A folder of checkpoints belongs to one run (``fit``'s writer, ``jaxnn._saver``): each file records
the run's id and its epoch, a writer holds an exclusive lock on the folder, and
clean-up and :func:`latest` go by what the files record, never by their names.
"""

import hashlib
import json
import os
import re
import struct
import uuid
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _files
from jaxnn._files import FolderInUseError as FolderInUseError
from jaxnn.distributed import fetch

MAGIC = b"JAXNNCKPT\x00"
FORMAT_VERSION = 2  # 2: the header has its own checksum
_FIXED = struct.Struct("<IQ32s")  # version, header length, header SHA-256
_START = len(MAGIC) + _FIXED.size
SUFFIX = ".jaxnn"
MAX_HEADER_BYTES = 64 << 20
# msgpack's bytes per array besides its data (about 20 measured), and at the ends
_PAYLOAD_SLACK = 64


def new_run_id() -> str:
    """A random run id, as checkpoints record it (not from the run's PRNG key: two
    runs with one seed differ)."""
    return uuid.uuid4().hex[:16]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, damaged, or does not fit the state it restores;
    or a checkpoint folder holds files this run must not touch."""


def _serialization():
    """``flax.serialization``, imported on first use rather than with jaxnn (flax's
    import is a fifth of jaxnn's). A run with checkpoints imports it as it starts
    (``jaxnn._saver.Saver``), so no import runs mid-training, where a Ctrl-C could land in it."""
    from flax import serialization

    return serialization


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _describe(tree) -> tuple[list, list]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    entries, arrays = [], []
    for path, leaf in leaves:
        is_key = _is_key(leaf)
        arr = fetch(jax.random.key_data(leaf) if is_key else leaf)
        entries.append(
            {
                "path": jax.tree_util.keystr(path),
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "prng_key": is_key,
            }
        )
        arrays.append(arr)
    return entries, arrays


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
    payload = _serialization().msgpack_serialize({str(i): a for i, a in enumerate(arrays)})
    header = json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "arrays": entries,
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "metadata": metadata or {},
        }
    ).encode()
    if len(header) > MAX_HEADER_BYTES:  # written, it could never be read back
        raise ValueError(
            f"{path}: the checkpoint's header (its metadata and history) would be {len(header)} "
            f"bytes, more than the {MAX_HEADER_BYTES} a reader accepts; keep less metadata, or "
            "split a very long run (fewer epochs per call of fit, resumed from a TrainState)"
        )
    blob = (
        MAGIC
        + _FIXED.pack(FORMAT_VERSION, len(header), hashlib.sha256(header).digest())
        + header
        + payload
    )
    _files.atomic_write(path, blob)
    return Path(path)


def _open(path: Path):
    return _files.open_regular(path, CheckpointError, "a checkpoint")


def _int(value, lo: int = 0, hi: int | None = None) -> bool:
    return type(value) is int and value >= lo and (hi is None or value <= hi)


# bool, int, uint, float, complex: never objects or strings
_DTYPE_KINDS = "biufc"


def _check_array_entry(path, i: int, entry) -> int:
    """The bytes array entry ``i`` of the header needs; CheckpointError naming the field."""
    where = f"{path}: header field arrays[{i}]"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{where} must be an object, got {type(entry).__name__}")
    for name, ok, expected in (
        ("path", lambda v: isinstance(v, str), "a string"),
        (
            "shape",
            lambda v: isinstance(v, list) and all(_int(d, 0, 2**40) for d in v),
            "a list of sizes",
        ),
        ("dtype", lambda v: isinstance(v, str), "a dtype name"),
        ("prng_key", lambda v: isinstance(v, bool), "true or false"),
    ):
        if name not in entry:
            raise CheckpointError(f"{where}.{name} is missing")
        if not ok(entry[name]):
            raise CheckpointError(f"{where}.{name} must be {expected}, got {entry[name]!r:.80}")
    dtype = None
    # a name, never numpy's comma-string format
    if re.fullmatch(r"[a-z][a-z0-9_]{0,30}", entry["dtype"]):
        try:
            # a deprecated alias ("a") is refused below, not warned about
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dtype = jnp.dtype(entry["dtype"])
        except (TypeError, ValueError):
            dtype = None
    # bfloat16 and the float8s are ml_dtypes (numpy kind "V"): jax's float types all the same
    if dtype is None or not (dtype.kind in _DTYPE_KINDS or jnp.issubdtype(dtype, jnp.floating)):
        raise CheckpointError(
            f"{where}.dtype must be a numeric dtype name, got {entry['dtype']!r:.80}"
        )
    if entry["prng_key"] and (entry["dtype"] != "uint32" or entry["shape"][-1:] not in ([2], [4])):
        raise CheckpointError(
            f"{where}.prng_key is true, but a PRNG key is stored as uint32 key data of shape (..., 2) or "
            f"(..., 4); got {entry['dtype']} {entry['shape']}"
        )
    return int(np.prod(entry["shape"], dtype=object)) * dtype.itemsize


def _check_metadata(path, meta: dict) -> None:
    """The metadata fields jaxnn itself reads back."""
    where = f"{path}: header field metadata"
    for name in ("epoch", "step"):  # the loop counts them in int32
        if name in meta and not _int(meta[name], 0, 2**31 - 1):
            raise CheckpointError(
                f"{where}.{name} must be an int in [0, 2**31 - 1], got {meta[name]!r:.80}"
            )
    if "settings" in meta and not isinstance(meta["settings"], dict):
        raise CheckpointError(
            f"{where}.settings must be an object, got {type(meta['settings']).__name__}"
        )
    if "run_id" in meta and not isinstance(meta["run_id"], str):
        raise CheckpointError(f"{where}.run_id must be a string, got {meta['run_id']!r:.80}")
    history = meta.get("history", {})
    if not isinstance(history, dict):
        raise CheckpointError(f"{where}.history must be an object, got {type(history).__name__}")
    shapes = set()
    for name, values in history.items():
        try:
            shapes.add(np.asarray(values, np.float32).shape)
        except (TypeError, ValueError):
            shapes.add(None)
        if not isinstance(values, list) or None in shapes:
            raise CheckpointError(
                f"{where}.history.{name} must be a list of numbers (one list per model)"
            )
    if len(shapes) > 1:
        raise CheckpointError(f"{where}.history has records of different shapes {sorted(shapes)}")


def _check_header(path, header) -> None:
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: the header must be a JSON object, got {type(header).__name__}"
        )
    fields = {
        "format_version": (lambda v: v == FORMAT_VERSION and type(v) is int, f"{FORMAT_VERSION}"),
        "arrays": (lambda v: isinstance(v, list), "a list"),
        "payload_bytes": (_int, "an int >= 0"),
        "payload_sha256": (
            lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v),
            "a SHA-256 hex digest",
        ),
        "metadata": (lambda v: isinstance(v, dict), "an object"),
    }
    for name, (ok, expected) in fields.items():
        if name not in header:
            raise CheckpointError(f"{path}: header field {name} is missing")
        if not ok(header[name]):
            raise CheckpointError(
                f"{path}: header field {name} must be {expected}, got {header[name]!r:.80}"
            )
    need = sum(_check_array_entry(path, i, e) for i, e in enumerate(header["arrays"]))
    if not need <= header["payload_bytes"] <= need + _PAYLOAD_SLACK * (len(header["arrays"]) + 1):
        raise CheckpointError(
            f"{path}: header field payload_bytes is {header['payload_bytes']}, but its arrays need {need} bytes"
        )
    _check_metadata(path, header["metadata"])


def _read_header(path: Path, f, size: int) -> dict:
    """The checked header of the open file ``f`` (positioned at the payload after)."""
    fixed = f.read(_START)
    if not fixed.startswith(MAGIC[: len(fixed)]) or not fixed:
        raise CheckpointError(
            f"{path} is not a jaxnn checkpoint (it does not start with the jaxnn magic bytes)"
        )
    if len(fixed) < _START:
        raise CheckpointError(f"{path} is truncated ({size} bytes)")
    version, header_len, header_digest = _FIXED.unpack(fixed[len(MAGIC) :])
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this jaxnn reads version {FORMAT_VERSION} "
            "(a newer file needs a newer jaxnn; an older one must be re-saved)"
        )
    if header_len > size - _START:
        raise CheckpointError(f"{path} is truncated (its header needs {header_len} bytes)")
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path} has a header of {header_len} bytes, more than the {MAX_HEADER_BYTES} allowed"
        )
    raw = f.read(header_len)
    if hashlib.sha256(raw).digest() != header_digest:
        raise CheckpointError(f"{path} is corrupted: its header checksum does not match")
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(
            f"{path} has a damaged header (not JSON: {type(e).__name__})"
        ) from None
    _check_header(path, header)
    payload = size - _START - header_len
    if payload != header["payload_bytes"]:
        raise CheckpointError(
            f"{path} is truncated or padded: payload of {payload} bytes, expected {header['payload_bytes']}"
        )
    return header


def read_header(path: str | os.PathLike) -> dict:
    """The checked header of a checkpoint file (its ``arrays`` and ``metadata``),
    reading no payload."""
    path = Path(path)
    with _open(path) as (f, size):
        return _read_header(path, f, size)


def _read(path, check=None) -> tuple[dict, dict]:
    """``(header, arrays)``; ``check(header)`` runs before the payload is read."""
    path = Path(path)
    with _open(path) as (f, size):
        header = _read_header(path, f, size)
        if check is not None:
            check(header)
        payload = f.read(header["payload_bytes"])
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(f"{path} was truncated while it was read")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path} is corrupted: its checksum does not match")
    try:
        arrays = _serialization().msgpack_restore(payload)
    except Exception as e:  # checksum passed, so this is a writer bug or a forged file
        raise CheckpointError(f"{path} has an unreadable payload: {e}") from None
    if not isinstance(arrays, dict):
        raise CheckpointError(f"{path} has an unreadable payload: not a table of arrays")
    return header, arrays


def _leaves(path, header: dict, arrays: dict, which) -> list[np.ndarray]:
    """The arrays at positions ``which``, each checked against its own header entry."""
    out = []
    for i in which:
        s = header["arrays"][i]
        leaf = arrays.get(str(i))
        if (
            not isinstance(leaf, np.ndarray)
            or list(leaf.shape) != s["shape"]
            or str(leaf.dtype) != s["dtype"]
        ):
            raise CheckpointError(f"{path}: array {s['path']} does not match its own header")
        out.append(leaf)
    return out


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata stored in a checkpoint (after checking its header)."""
    return read_header(path)["metadata"]


def restore(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Restores the state saved at ``path`` into the structure of ``template``.

    Args:
      path: a checkpoint file.
      template: a pytree with the expected structure, shapes and dtypes (e.g. a fresh
        state for the same model and optimizer).

    Returns:
      ``(state, metadata)``.

    Raises:
      CheckpointError: the file is missing, not a regular file, truncated, corrupted,
        forged, from a newer format, or its arrays differ from the template's (the
        message lists the differences).
    """
    expected, _ = _describe(template)

    def check(header):
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
            raise CheckpointError(
                f"{path} does not match this model/optimizer:\n  " + "\n  ".join(diffs[:10])
            )

    header, arrays = _read(path, check)
    stored = header["arrays"]
    leaves = _leaves(path, header, arrays, range(len(stored)))
    restored = [
        jax.random.wrap_key_data(a, impl=jax.random.key_impl(t)) if s["prng_key"] else a
        for a, s, t in zip(leaves, stored, jax.tree.leaves(template), strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), restored), header["metadata"]


def scan(folder: str | os.PathLike) -> list[tuple[Path, dict | None, str]]:
    """Every ``*.jaxnn`` entry in ``folder``, by name: ``(path, metadata, "")``, or
    ``(path, None, why)`` for one that is not a readable checkpoint."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            found.append((path, read_metadata(path), ""))
        except CheckpointError as e:
            # else deleted since it was listed: a writer's clean-up
            if path.exists() or path.is_symlink():
                found.append((path, None, str(e)))
    return found


def latest(path: str | os.PathLike) -> Path:
    """``path`` itself if it is not a folder, else the folder's newest checkpoint by the
    epoch recorded inside (not by file name).

    Raises:
      CheckpointError: no checkpoint in the folder, a ``.jaxnn`` file in it that is not
        a readable checkpoint, or checkpoints of more than one run.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    found = scan(path)
    if not found:
        raise CheckpointError(f"no checkpoint ({SUFFIX} file) in {path}")
    for _, meta, why in found:
        if meta is None:
            raise CheckpointError(
                f"{why}; pass the checkpoint file to resume from instead of the folder"
            )
    runs = {meta.get("run_id") for _, meta, _ in found}
    if len(runs) > 1:
        raise CheckpointError(
            f"{path} holds checkpoints of {len(runs)} runs ({', '.join(sorted(map(str, runs)))}); "
            "pass the checkpoint file to resume from"
        )
    return max(found, key=lambda f: _files.position(f[1]))[0]


def load_params(path: str | os.PathLike, params: Any) -> tuple[Any, dict]:
    """The trained parameters in a checkpoint that ``fit`` (or ``fit_many``) wrote.

    Args:
      path: a checkpoint file, or a folder (its newest checkpoint). A folder may be
        written meanwhile by a running fit: a newest file deleted by its clean-up
        before it is read is passed over for the next newest.
      params: parameters of the same model (e.g. ``model.init(key)``), for their
        structure, shapes and dtypes (stacked on a leading axis for ``fit_many``).

    Returns:
      ``(params, metadata)``: the checkpoint's ``state.params`` and its metadata
      (``epoch``, ``history``, ``config``, ``run_id``, ...).

    Raises:
      CheckpointError: as :func:`restore`, or the file holds no fit state, or more
        than a fit state of these params could hold (read no further).
    """
    folder, attempts = Path(path).is_dir(), 0
    while True:
        file = None
        try:
            file = latest(
                path
            )  # in the retry: every file it listed may be deleted before it reads them
            return _load_params(file, params)
        except CheckpointError:
            attempts += 1
            if not folder or (file is not None and file.exists()) or attempts >= _RETRIES:
                raise


_RETRIES = 8  # a folder's newest file deleted under the reader this many times in a row: give up
# a fit state holds the params, the optimizer's moments, the best params, a streamed
# epoch's first state: a few times the params' bytes, far below this many
_STATE_FACTOR = 16


def _load_params(path: Path, params: Any) -> tuple[Any, dict]:
    prefix = ".state.params"
    expected, arrays = _describe(params)
    want = [(e["path"], e["shape"], e["dtype"]) for e in expected]
    bound = _STATE_FACTOR * sum(a.nbytes for a in arrays) + (1 << 20)
    which = []

    def check(header):
        which.extend(i for i, s in enumerate(header["arrays"]) if s["path"].startswith(prefix))
        if not which:
            raise CheckpointError(f"{path} holds no fit state (no arrays under {prefix})")
        stored = [header["arrays"][i] for i in which]
        got = [(s["path"][len(prefix) :], s["shape"], s["dtype"]) for s in stored]
        if got != want:
            raise CheckpointError(
                f"{path}: its params {got[:4]} do not match the given params {want[:4]}"
            )
        if header["payload_bytes"] > bound:
            raise CheckpointError(
                f"{path} holds {header['payload_bytes']} bytes of arrays, more than a fit state of these params "
                f"can ({bound}); not read"
            )

    header, arrays = _read(path, check)
    leaves = _leaves(path, header, arrays, which)
    return jax.tree.unflatten(jax.tree.structure(params), leaves), header["metadata"]
