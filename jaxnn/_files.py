"""Files and folders, written and read safely (private): one place for atomic writes,
folder locks, folder creation and bounded reads, shared by checkpoints, the saver,
the experiment runner and the logs.

A file is never half-written (a temporary file in the same folder, fsync, rename,
fsync the folder); a lock file that is a planted link is refused, never followed; a
file is read only when it is a regular file of bounded size (never a FIFO, a device
or a folder). Errors name the file.
"""

import contextlib
import fcntl
import os
import stat
import tempfile
from pathlib import Path


class FolderInUseError(OSError):
    """Another process holds a folder's lock (a checkpoint folder, a run folder)."""


def named_error(error: OSError, path) -> OSError:
    """``error`` again, naming ``path`` (full disk, file too large, permission, ...)."""
    return type(error)(error.errno, f"{error.strerror or error} (writing {path})", str(path))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Writes ``data`` to ``path`` so that a reader sees the old file or the new one,
    never a mix: temporary file in the same folder (created exclusively), fsync,
    rename, fsync the folder. The file's mode is ``mode``, else it follows the umask,
    as ``open`` would make it; an ``OSError`` names the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask() if mode is None else mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise named_error(e, path) from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def lock_folder(folder: Path) -> int:
    """Takes ``folder``'s exclusive lock (``.lock``, holding the owner's pid) and returns
    its file descriptor; closing it, or the process ending in any way, releases it. A
    ``.lock`` that is a link is refused (never followed: its target is not ours).

    Raises:
      FolderInUseError: another process holds it (the message names its pid).
      OSError: the folder cannot be written, or ``.lock`` is a link or not a regular
        file (the message names the file).
    """
    path = folder / ".lock"
    try:
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666
        )
    except OSError as e:
        if os.path.islink(path):
            why = f"{path} is a symbolic link; a lock file must be a plain file (remove it)"
            raise OSError(e.errno, why, str(path)) from None
        raise named_error(e, path) from e
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file; a lock file must be a plain file (remove it)")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FolderInUseError(
            f"{folder} is in use by another process (pid {holder}); wait for it to end or use another folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise named_error(e, path) from e
    return fd


def make_folder(folder: Path, what: str) -> None:
    """Creates ``folder`` (and its parents); an error says what is in the way."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(
            f"{what} {folder} is not a folder (a file, or a link to nothing)"
        ) from None
    except OSError as e:
        raise named_error(e, folder) from e


@contextlib.contextmanager
def open_regular(path: Path, error: type[Exception], what: str, max_bytes: int | None = None):
    """``(file, size)``: ``path`` opened for reading if it is a regular file (a link to
    one is followed) of at most ``max_bytes``; else ``error`` saying why it is not
    ``what`` (e.g. "a checkpoint"). A FIFO is opened without blocking, then refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"no {what.removeprefix('a ').removeprefix('an ')} at {path}") from None
    except OSError as e:
        raise error(f"cannot open {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{path} is not a regular file (a folder, device, FIFO or socket); not {what}")
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise error(f"{path} is {st.st_size} bytes, more than the {max_bytes} expected of {what}")
    with os.fdopen(fd, "rb") as f:
        yield f, st.st_size


def read_text(path: Path, error: type[Exception], what: str, max_bytes: int = 1 << 20) -> str:
    """The text of ``path``, a regular file of at most ``max_bytes`` (a config, a run
    record): never a FIFO, a device or a link to one; ``error`` naming the file else."""
    with open_regular(path, error, what, max_bytes) as (f, size):
        data = f.read(size + 1)
    if len(data) > size or len(data) > max_bytes:
        raise error(f"{path} grew while it was read; not {what}")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise error(f"{path} is not text (UTF-8); not {what}") from None


def position(meta: dict) -> tuple[int, int]:
    """``(epochs completed, updates into the next epoch)``: how far a checkpoint is (a
    search's: ``(chunks run, 0)``)."""
    return meta.get("epoch", -1), meta.get("step", 0)
