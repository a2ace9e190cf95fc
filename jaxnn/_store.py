"""The program store's files (private): jaxnn's compiled programs, kept as serialized
executables in a private folder of the user's own, so that a later process loads a
program instead of tracing, lowering and compiling it again (``jaxnn._programs``
decides what a program's key is and when to use the store).

A serialized executable is code (loading it unpickles it, and it holds machine
code), so the store is trusted only as far as ssh trusts a private key:

- the folder (``$XDG_CACHE_HOME/jaxnn/programs``, else ``~/.cache/jaxnn/programs``;
  ``JAXNN_PROGRAM_STORE=<folder>`` names another) is created 0700 and refused when it
  is a link, not the user's own, or group/world-writable;
- a per-store secret (``secret``, a 0600 file of the user's own) keys an HMAC-SHA256
  of each entry's key, length and bytes; an entry that is not a regular 0600 file
  of the user's own, or whose length or MAC is wrong, is dropped and never loaded;
- every entry is written atomically (two writers of one entry leave one whole
  entry), and the store holds at most :data:`MAX_BYTES` (``JAXNN_PROGRAM_STORE_MB``),
  the least recently used entries going first.

``JAXNN_PROGRAM_STORE=0`` (or ``off``) turns the store off.
"""

import dataclasses
import hashlib
import hmac
import os
import secrets
import stat
import struct
from pathlib import Path

from jaxnn import _files

ENV = "JAXNN_PROGRAM_STORE"
ENV_MB = "JAXNN_PROGRAM_STORE_MB"
_OFF = ("0", "off", "false", "no")
MAX_BYTES = 1 << 30  # default bound on the store's size
_MAGIC = b"JAXNNPS1"
_HEAD = struct.Struct(f"<{len(_MAGIC)}sQ32s")  # magic, payload length, MAC
_SUFFIX = ".program"
_SECRET = "secret"


class UntrustedStoreError(PermissionError):
    """The program store's folder or secret is not private to this user."""


@dataclasses.dataclass
class Counts:
    """This process's use of the store: programs loaded, compiled and stored, and
    entries dropped because a check failed."""

    hits: int = 0
    misses: int = 0
    stored: int = 0
    dropped: int = 0


counts = Counts()


def default_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxnn" / "programs"


def folder(environ=None) -> Path | None:
    """The store's folder from the environment, or ``None`` when it is off."""
    setting = (os.environ if environ is None else environ).get(ENV, "").strip()
    if setting.lower() in _OFF:
        return None
    return Path(setting) if setting else default_folder()


def max_bytes(environ=None) -> int:
    setting = (os.environ if environ is None else environ).get(ENV_MB, "").strip()
    if not setting:
        return MAX_BYTES
    try:
        mb = float(setting)
    except ValueError:
        raise ValueError(f"{ENV_MB} must be a number of MiB, got {setting!r}") from None
    if not mb > 0:
        raise ValueError(f"{ENV_MB} must be a positive number of MiB, got {setting!r}")
    return int(mb * 2**20)


def _private(st: os.stat_result, what: str, path: Path, kind, mask: int) -> None:
    if not kind(st.st_mode):
        raise UntrustedStoreError(
            f"the program store's {what} {path} is not a {kind.__name__[2:].lower()}"
        )
    if st.st_uid != os.getuid():
        raise UntrustedStoreError(
            f"the program store's {what} {path} belongs to another user (uid {st.st_uid}); "
            f"a store holds code, so it must be your own: remove it, or set {ENV}=0"
        )
    if st.st_mode & mask:
        raise UntrustedStoreError(
            f"the program store's {what} {path} has mode {stat.S_IMODE(st.st_mode):o}; a store "
            f"holds code, so it must not be writable by others (chmod {0o700 if mask == 0o022 else 0o600:o})"
        )


class Store:
    """One store folder, checked when opened (:class:`UntrustedStoreError` if it is
    not private). ``get``/``put`` take a key (hex text) and bytes."""

    def __init__(self, path: str | os.PathLike, limit: int = MAX_BYTES):
        self.path = Path(path)
        self.limit = limit
        _files.make_folder(self.path.parent, "the program store's parent")
        try:
            self.path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        _private(os.lstat(self.path), "folder", self.path, stat.S_ISDIR, 0o022)
        self._secret = self._read_secret()

    def _read_secret(self) -> bytes:
        path = self.path / _SECRET
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            _private(os.fstat(f.fileno()), "secret", path, stat.S_ISREG, 0o077)
            secret = f.read(33)
        if len(secret) != 32:  # a secret another process is writing, or a broken one
            raise UntrustedStoreError(
                f"the program store's secret {path} is {len(secret)} bytes, not 32: remove it "
                "(the store's entries are then dropped as they are read)"
            )
        return secret

    def _mac(self, key: str, payload: bytes) -> bytes:
        head = key.encode() + struct.pack("<Q", len(payload))
        return hmac.new(self._secret, head + payload, hashlib.sha256).digest()

    def _entry(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"a program key is hex text, got {key!r}")
        return self.path / f"{key}{_SUFFIX}"

    def get(self, key: str) -> bytes | None:
        """The entry's bytes when it passes every check; ``None`` (and the entry
        dropped) otherwise."""
        path = self._entry(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:  # a link, or unreadable: never followed, never loaded
            return self._drop(path)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            try:
                _private(st, "entry", path, stat.S_ISREG, 0o077)
            except UntrustedStoreError:
                return self._drop(path)
            data = f.read(min(st.st_size, self.limit) + 1)
        if len(data) < _HEAD.size:
            return self._drop(path)
        magic, length, mac = _HEAD.unpack_from(data)
        payload = data[_HEAD.size :]
        if magic != _MAGIC or length != len(payload):
            return self._drop(path)
        if not hmac.compare_digest(mac, self._mac(key, payload)):
            return self._drop(path)
        try:  # recently used: eviction goes by modification time
            os.utime(path)
        except OSError:
            pass
        return payload

    def drop(self, key: str) -> None:
        self._drop(self._entry(key))

    def _drop(self, path: Path) -> None:
        counts.dropped += 1
        try:
            path.unlink()
        except OSError:
            pass

    def put(self, key: str, payload: bytes) -> None:
        data = _HEAD.pack(_MAGIC, len(payload), self._mac(key, payload)) + payload
        if len(data) > self.limit:
            return
        _files.atomic_write(self._entry(key), data, mode=0o600)
        counts.stored += 1
        self.evict()

    def entries(self) -> list[tuple[Path, os.stat_result]]:
        found = []
        for path in self.path.glob(f"*{_SUFFIX}"):
            try:
                found.append((path, os.lstat(path)))
            except FileNotFoundError:  # another process evicted it
                pass
        return found

    def size(self) -> int:
        return sum(st.st_size for _, st in self.entries())

    def evict(self) -> None:
        """Drops the least recently used entries until the store holds at most its limit."""
        listing = sorted(self.entries(), key=lambda e: e[1].st_mtime)
        total = sum(st.st_size for _, st in listing)
        for path, st in listing:
            if total <= self.limit:
                break
            path.unlink(missing_ok=True)
            total -= st.st_size

    def clear(self) -> int:
        """Removes every entry (the secret stays); returns how many."""
        listing = self.entries()
        for path, _ in listing:
            path.unlink(missing_ok=True)
        return len(listing)
