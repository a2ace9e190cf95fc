"""jaxnn's program store, and JAX's persistent compilation cache, both on by default.

**The program store** keeps jaxnn's own compiled programs (fit's, fit_many's, the
search's, predict's, evaluate's, the estimators', the helpers') as serialized
executables, so a repeat run in a new process neither traces, lowers nor compiles
them: it loads them. A program's key is its definition (jaxnn's source, the jax
version, the device, the model, loss and optimizer, the shapes): a change is a miss,
never a wrong program. The store is a private folder (``$XDG_CACHE_HOME/jaxnn/programs``
or ``~/.cache/jaxnn/programs``; ``JAXNN_PROGRAM_STORE=<folder>`` names another, ``=0``
turns it off), checked like ssh's private files, with every entry MAC-checked under a
per-store secret before it is loaded; it holds at most 1 GiB
(``JAXNN_PROGRAM_STORE_MB``), least recently used first out. :func:`clear` empties it,
:func:`store` says what it holds and what this process took from it (``jaxnn.doctor()``
prints it), and :func:`program_key` lets a plain ``apply_fn`` of yours be stored.

**JAX's persistent compilation cache** serves every other program (and the store's on a miss).

Most of a short run is compiling (the seed network's 100-epoch fit spends about 95%
of its first call in XLA). With the cache, a compiled program is written to disk and
a later process with the same program, jax version and device loads it instead of
compiling again. Every program is stored: a short run compiles dozens of small
ones. jaxnn turns the cache on when it is imported, in a per-user folder
(``$XDG_CACHE_HOME/jaxnn/xla`` or ``~/.cache/jaxnn/xla``, never inside a project),
unless:

- ``JAXNN_COMPILATION_CACHE=0`` (or ``off``) is set: the cache stays off; a folder
  path there is used instead of the default;
- JAX's own ``jax_compilation_cache_dir`` is already set: that choice wins.

:func:`disable` and :func:`enable` change it at run time; :func:`folder` says where
it is (``jaxnn.doctor()`` prints it). The cache is JAX's; this module configures it and
repairs it: JAX never replaces an entry that a full disk, a file-size limit or a kill
left truncated (it warns and recompiles in every later process), so :func:`enable`
drops the entries written since its last look that do not decompress, and
:func:`check` (run by ``jaxnn.doctor()``) looks at every entry.
"""

import dataclasses
import os
import time
import zlib
from pathlib import Path

import jax

from jaxnn import _files, _programs, _store

ENV = "JAXNN_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
# Every program, however quick to compile: a short run compiles dozens of small ones
# (its data, init, metrics, plots' inputs) that add up to a second on a 2-core CPU.
MIN_COMPILE_SECONDS = 0.0
_ENTRY = "-cache"  # JAX's file name for an entry: <key>-cache (and <key>-atime beside it)
_STAMP = ".jaxnn-checked"  # its modification time: entries older than it were checked
# an entry younger than this may still be being written: left for the next look
_WRITING_SECONDS = 2.0
_MAX_ENTRY = 1 << 31
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclasses.dataclass(frozen=True)
class Check:
    """What :func:`check` found in a cache folder: the entries it holds, their size in
    bytes, and the names of the truncated entries it dropped (or could not drop)."""

    folder: str
    entries: int
    size: int
    dropped: tuple = ()
    undeletable: tuple = ()

    def __str__(self) -> str:
        text = f"{self.folder}: {self.entries} compiled programs, {self.size / 2**20:.1f} MiB"
        if self.dropped:
            text += f"; dropped {len(self.dropped)} truncated"
        return text


def _zstd():
    try:
        from compression import zstd  # Python 3.14

        return zstd
    except ImportError:
        try:
            import zstandard

            return zstandard.ZstdDecompressor()
        except ImportError:
            return None


def _intact(data: bytes) -> bool:
    """Whether a cache entry's bytes decompress whole (JAX writes zstd or zlib)."""
    if data[:4] == _ZSTD_MAGIC:
        zstd = _zstd()
        if zstd is None:  # not readable here, so not judged
            return True
        try:
            zstd.decompress(data)
        except Exception:  # zstd's own error class differs by package
            return False
        return True
    try:
        zlib.decompress(data)
    except zlib.error:
        return False
    return True


def _entry_intact(entry: Path) -> bool:
    try:
        with _files.open_regular(entry, OSError, "a cache entry", max_bytes=_MAX_ENTRY) as (f, _):
            return _intact(f.read())
    except OSError:  # gone, replaced by something else, or larger than any program: not judged
        return True


def check(path: str | os.PathLike | None = None, *, since_last: bool = False) -> Check:
    """Looks at the cache folder's entries (default: the folder in use) and drops the
    ones that do not decompress, with their access-time files; ``since_last``: only
    the entries written since the last look. Returns a :class:`Check`."""
    if path is None and folder() is None:
        raise ValueError("the compilation cache is off: pass the folder to check")
    root = Path(path if path is not None else folder())
    if not root.is_dir():
        return Check(str(root), 0, 0)
    start = time.time()
    stamp = root / _STAMP
    last = stamp.stat().st_mtime if since_last and stamp.is_file() else float("-inf")
    listing = [(p, p.stat()) for p in root.glob(f"*{_ENTRY}") if p.is_file() and not p.is_symlink()]
    dropped, undeletable = [], []
    for entry, info in listing:
        if last <= info.st_mtime <= start - _WRITING_SECONDS and not _entry_intact(entry):
            try:
                entry.unlink()
                entry.with_name(entry.name.removesuffix(_ENTRY) + "-atime").unlink(missing_ok=True)
                dropped.append(entry.name)
            except OSError:
                undeletable.append(entry.name)
    try:  # the next look starts where this one could judge
        stamp.touch()
        os.utime(stamp, (start - _WRITING_SECONDS,) * 2)
    except OSError:  # a read-only cache folder: JAX cannot write to it either
        pass
    kept = [info.st_size for entry, info in listing if entry.name not in dropped]
    return Check(str(root), len(kept), sum(kept), tuple(dropped), tuple(undeletable))


def default_folder() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/jaxnn/xla``, else ``~/.cache/jaxnn/xla``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxnn" / "xla"


def enable(path: str | os.PathLike | None = None) -> Path:
    """Turns the persistent compilation cache on, in ``path`` (default
    :func:`default_folder`); returns the folder."""
    if path is not None and not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a folder path, got {path!r}")
    target = Path(path) if path is not None else default_folder()
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    try:
        check(target, since_last=True)
    except OSError:  # an unreadable folder: JAX warns about it itself; doctor reports it
        pass
    return target


def disable() -> None:
    """Turns the persistent compilation cache off for this process."""
    jax.config.update("jax_compilation_cache_dir", None)


def folder() -> str | None:
    """The cache folder in use, or ``None`` when the cache is off."""
    return jax.config.jax_compilation_cache_dir or None


def configure_from_environment(environ=None) -> str | None:
    """What ``import jaxnn`` does: the default cache unless the environment says
    otherwise (see the module docstring). Returns the folder, or ``None``."""
    environ = os.environ if environ is None else environ
    setting = environ.get(ENV, "").strip()
    if setting.lower() in _OFF or folder() is not None:
        return folder()
    return str(enable(setting or None))


@dataclasses.dataclass(frozen=True)
class StoreInfo:
    """What the program store holds (``entries``, ``size`` in bytes, ``limit``) and
    what this process took from it: programs loaded (``hits``), compiled and stored
    (``misses``, ``stored``), and entries ``dropped`` because a check failed."""

    folder: str
    entries: int
    size: int
    limit: int
    hits: int
    misses: int
    stored: int
    dropped: int

    def __str__(self) -> str:
        return (
            f"{self.folder}: {self.entries} programs, {self.size / 2**20:.1f} of "
            f"{self.limit / 2**20:.0f} MiB; this process loaded {self.hits}, compiled {self.misses}"
        )


def store() -> StoreInfo | None:
    """The program store in use, or ``None`` when it is off (``JAXNN_PROGRAM_STORE=0``).
    Raises ``PermissionError`` when its folder or secret is not private to you."""
    path = _store.folder()
    if path is None:
        return None
    opened = _store.Store(path, _store.max_bytes())
    entries = opened.entries()
    c = _store.counts
    size = sum(st.st_size for _, st in entries)
    return StoreInfo(str(path), len(entries), size, opened.limit, **dataclasses.asdict(c))


def clear() -> int:
    """Empties the program store (its secret stays); returns how many programs it held.
    The programs this process loaded stay in use."""
    path = _store.folder()
    return 0 if path is None else _store.Store(path, _store.max_bytes()).clear()


def program_key(apply_fn, key: str):
    """Lets the program store keep the programs of a plain ``apply_fn(params, x)``:
    jaxnn cannot read what a function of yours computes, so it stores its programs
    only under a key you give (change the key when you change the function). Returns
    ``apply_fn``, marked.

      >>> apply_fn = program_key(lambda p, x: x @ p, "linear-v1")
      >>> apply_fn.__jaxnn_program_key__
      'linear-v1'

    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a function, got {type(apply_fn).__name__}")
    if not isinstance(key, str) or not key.strip():
        raise ValueError(
            f"key must be a non-empty string naming this function's version, got {key!r}"
        )
    setattr(apply_fn, _programs.KEY_ATTRIBUTE, key)
    return apply_fn
