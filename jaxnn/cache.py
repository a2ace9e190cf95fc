"""JAX's persistent compilation cache, switched on for jaxnn by default.

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
it is (``jaxnn.doctor()`` prints it). The cache is JAX's; this module only configures it.
"""

import os
from pathlib import Path

import jax

ENV = "JAXNN_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
# Every program, however quick to compile: a short run compiles dozens of small ones
# (its data, init, metrics, plots' inputs) that add up to a second on a 2-core CPU.
MIN_COMPILE_SECONDS = 0.0


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
