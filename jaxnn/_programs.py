"""jaxnn's compiled programs, served by the program store (private; the files are
``jaxnn._store``'s): a repeat run in a new process loads a program instead of
tracing, lowering and compiling it again.

:class:`Program` wraps a jitted function. Its first call for a definition and
argument shapes finds the program's key, loads the executable from the store, or
compiles it (``lower().compile()``, what ``jit`` does) and stores it; later calls in
the process reuse the executable. The key is the program's *definition*, never its
traced text:

- the program's name, a fingerprint of jaxnn's own source, the jax and jaxlib
  versions, the backend (its platform, version, device kinds and count, the host
  CPU's instruction set), the jax settings that change a trace (x64, the default
  matmul precision, the PRNG) and ``XLA_FLAGS``;
- the static arguments, described by :func:`describe`: jaxnn's, optax's, jax's,
  Flax's and Equinox's functions by name (with their package's version) and the
  values they close over; a dataclass or NamedTuple by class and fields; a class
  from elsewhere (a user's Flax or Equinox module) by its source; a plain function
  of the user's only when it carries a key from :func:`jaxnn.cache.program_key`;
- the dynamic arguments' pytree structure, shapes, dtypes, weak types and shardings.

A change to any of these is a miss, never a wrong program. Anything the description
cannot name (a user's function without a key, an object of unknown type) is not
stored: the program compiles through ``jit`` as before.
"""

import contextlib
import dataclasses
import enum
import functools
import hashlib
import inspect
import os
import pickle
import platform
import sys
import threading
import types
import warnings
from pathlib import Path

import jax
import numpy as np

from jaxnn import _store

KEY_ATTRIBUTE = "__jaxnn_program_key__"
_TRUSTED = ("jaxnn", "optax", "jax", "jaxlib", "flax", "equinox", "chex", "numpy")
_BUILTIN = ("builtins", "math", "operator", "functools")


class Unstorable(Exception):
    """A static argument the key cannot describe: the program is not stored."""


def _package(module: str | None) -> str:
    return (module or "").partition(".")[0]


def _version(package: str) -> str:
    if package == "jaxnn":  # its source is in the key
        return ""
    return str(getattr(sys.modules.get(package), "__version__", ""))


def _named(obj) -> str:
    """``module.qualname@version`` of a function or class from a trusted package, else
    :class:`Unstorable` (a class from elsewhere is described by its source instead)."""
    module = getattr(obj, "__module__", None)
    package = _package(module)
    if package in _BUILTIN:
        return f"{module}.{obj.__qualname__}"
    if package not in _TRUSTED:
        raise Unstorable(f"{obj!r} is not jaxnn's, optax's, jax's, Flax's or Equinox's")
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}@{_version(package)}"


def _class(cls: type) -> str:
    if _package(cls.__module__) in _TRUSTED + _BUILTIN:
        return _named(cls)
    try:  # a user's class (a Flax or Equinox module): its file's source, else its own
        source = inspect.getsource(sys.modules[cls.__module__])
    except (OSError, TypeError, KeyError):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            raise Unstorable(f"the source of {cls.__qualname__} cannot be read") from None
    return f"{cls.__module__}.{cls.__qualname__}#{hashlib.sha256(source.encode()).hexdigest()}"


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return "<empty cell>"


def describe(obj, _seen: frozenset = frozenset()) -> str:
    """A stable text for a static argument (see the module docstring); raises
    :class:`Unstorable` for what it cannot name."""
    if id(obj) in _seen:
        return "<cycle>"
    seen = _seen | {id(obj)}
    d = functools.partial(describe, _seen=seen)
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        return f"{type(obj).__name__}:{obj!r}"
    if (key := getattr(obj, KEY_ATTRIBUTE, None)) is not None:
        return f"user:{key}"
    if isinstance(obj, enum.Enum):
        return f"{_class(type(obj))}.{obj.name}"
    if isinstance(obj, type):
        return _class(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
        return f"{_class(type(obj))}({','.join(map(d, obj))})"
    if isinstance(obj, tuple | list):
        return f"{type(obj).__name__}({','.join(map(d, obj))})"
    if isinstance(obj, dict):
        return f"dict({','.join(sorted(f'{d(k)}:{d(v)}' for k, v in obj.items()))})"
    if isinstance(obj, np.dtype):
        return f"dtype:{obj}"
    if isinstance(obj, np.ndarray | np.generic | jax.Array):
        a = np.asarray(obj)
        return f"array:{a.dtype}{a.shape}#{hashlib.sha256(a.tobytes()).hexdigest()}"
    if isinstance(obj, jax.sharding.Sharding | jax.sharding.Mesh | jax.sharding.PartitionSpec):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, functools.partial):
        return f"partial({d(obj.func)},{d(obj.args)},{d(obj.keywords)})"
    if isinstance(obj, types.MethodType):
        return f"method({d(obj.__self__)}.{obj.__func__.__name__})"
    if isinstance(obj, types.FunctionType):
        cells = tuple(_contents(c) for c in obj.__closure__ or ())
        return (
            f"fn:{_named(obj)}:{obj.__code__.co_firstlineno}"
            f"({d(cells)},{d(obj.__defaults__)},{d(obj.__kwdefaults__)})"
        )
    if dataclasses.is_dataclass(obj):
        fields = (f for f in dataclasses.fields(obj) if f.name not in ("parent",))
        return f"{_class(type(obj))}({','.join(f'{f.name}={d(getattr(obj, f.name))}' for f in fields)})"
    if callable(obj) and hasattr(obj, "__wrapped__"):  # a jitted function: what it wraps
        return f"wrapped:{_named(obj)}({d(obj.__wrapped__)})"
    if callable(obj) and hasattr(obj, "__qualname__"):  # jax's custom-derivative functions
        return f"fn:{_named(obj)}"
    raise Unstorable(f"cannot describe a {type(obj).__qualname__}")


@functools.cache
def _source() -> str:
    """A fingerprint of jaxnn's own source."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    return f"{platform.machine()}#{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


# the jax settings that change what a trace makes
_SETTINGS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
    "jax_debug_nans",
    "jax_debug_infs",
)


def _config() -> dict:
    return {name: getattr(jax.config, name) for name in _SETTINGS}


def environment() -> str:
    """Everything besides the program that decides its executable (not memoized: the
    jax settings can change at run time)."""
    import jaxlib

    devices = jax.devices()
    backend = devices[0].client
    parts = (
        _source(),
        jax.__version__,
        jaxlib.__version__,
        backend.platform,
        backend.platform_version,
        sorted({dev.device_kind for dev in devices}),
        len(devices),
        jax.process_count(),
        _cpu() if backend.platform == "cpu" else "",
        sorted(_config().items()),
        os.environ.get("XLA_FLAGS", ""),
    )
    return "|".join(map(str, parts))


def _aval(leaf):
    if isinstance(leaf, jax.Array):
        return (leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False), leaf.sharding)
    if isinstance(leaf, np.ndarray | np.generic):
        return (leaf.shape, leaf.dtype)
    return (type(leaf),)  # a Python scalar: weakly typed


_opened: dict = {}
_lock = threading.Lock()
_compiling = threading.RLock()


def store() -> "_store.Store | None":
    """The store the environment names (opened once per setting), or ``None`` when it
    is off or refused (a warning says why, once). Called on every program call: a
    dictionary lookup on the settings' text once the store is open."""
    names = (_store.ENV, _store.ENV_MB, "XDG_CACHE_HOME", "HOME")
    setting = tuple(os.environ.get(n) for n in names)
    try:
        return _opened[setting]
    except KeyError:
        pass
    with _lock:
        try:
            path = _store.folder()
            _opened[setting] = None if path is None else _store.Store(path, _store.max_bytes())
        except (OSError, ValueError) as e:  # untrusted, cannot be made, or a bad size
            _opened[setting] = None
            warnings.warn(
                f"{e}; jaxnn runs without its program store", RuntimeWarning, stacklevel=3
            )
        return _opened[setting]


@contextlib.contextmanager
def _no_jax_cache():
    """JAX's persistent cache neither read nor written while compiling (it decides
    once per process whether it is used, so its own setting cannot turn it off here)."""
    from jax._src import compilation_cache

    with _compiling:
        used = compilation_cache.is_cache_used
        compilation_cache.is_cache_used = lambda backend: False
        try:
            yield
        finally:
            compilation_cache.is_cache_used = used


def _load(payload: bytes):
    serialized, in_tree, out_tree, ids = pickle.loads(payload)  # MAC-checked: the user's own
    from jax.experimental import serialize_executable

    by_id = {d.id: d for d in jax.devices()}
    devices = [by_id[i] for i in ids]  # the devices it was compiled for, not all of them
    return serialize_executable.deserialize_and_load(
        serialized, in_tree, out_tree, execution_devices=devices
    )


def _pickle_layouts_by_name() -> None:
    """jax 0.12's ``AutoLayout`` is a singleton compared by identity, but it pickles as
    a new instance: a loaded executable's outputs then carry a layout unequal to every
    other ``AutoLayout``, and a later ``jax.grad`` trace over them fails ("Expected
    cotangent type float32[4,1] but got float32[4,1]"). Pickled by name, it loads as
    the singleton itself."""
    try:
        from jax._src import layout
    except ImportError:  # a jax without it
        return
    auto = getattr(layout, "AutoLayoutSingleton", None)
    if auto is not None and "__reduce__" not in vars(auto):
        auto.__reduce__ = lambda self: "AutoLayout"  # the module's global of that name


def _dump(executable) -> bytes:
    from jax.experimental import serialize_executable

    _pickle_layouts_by_name()

    ids = [d.id for d in executable.runtime_executable().local_devices()]
    return pickle.dumps((*serialize_executable.serialize(executable), ids))


_programs: list = []


def forget() -> None:
    """Drops the executables every :class:`Program` holds in this process (as
    ``jax.clear_caches()`` does jit's); the store keeps them."""
    for p in _programs:
        p._memo.clear()
        p._definitions.clear()


class Program:
    """``jitted`` (whose ``static_argnums`` are given again here), served by the store."""

    def __init__(self, name: str, jitted, static_argnums=(0,)):
        self.name = name
        self.jitted = jitted
        self.static = tuple(static_argnums)
        self._memo = {}  # signature -> executable, or None: not stored
        self._definitions = {}  # statics -> description, or None: not storable
        functools.update_wrapper(self, jitted)
        _programs.append(self)

    def lower(self, *args):
        return self.jitted.lower(*args)

    def __call__(self, *args):
        executable = self.executable(*args)
        if executable is None:
            return self.jitted(*args)
        return executable(*(a for i, a in enumerate(args) if i not in self.static))

    def _signature(self, args) -> tuple | None:
        """What decides the executable besides the environment: the statics, the
        dynamic arguments' structure and types, the default device; ``None`` inside
        another trace (the call is then part of that program)."""
        leaves, tree = jax.tree.flatten(
            tuple(a for i, a in enumerate(args) if i not in self.static)
        )
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return None
        statics = tuple(args[i] for i in self.static)
        return statics, tree, tuple(map(_aval, leaves)), str(jax.config.jax_default_device)

    def key(self, *args) -> str | None:
        """The store's key for a call with ``args`` (hex), or ``None`` when the call
        is not stored."""
        signature = self._signature(args)
        if signature is None or (definition := self._definition(signature[0])) is None:
            return None
        _, tree, avals, device = signature
        text = "\n".join((self.name, environment(), definition, str(tree), repr(avals), device))
        return hashlib.sha256(text.encode()).hexdigest()

    def executable(self, *args):
        """The compiled program for these arguments (loaded, or compiled and stored),
        or ``None`` when the store is off or the call is not stored."""
        st = store()
        if st is None or jax.config.jax_disable_jit:
            return None
        signature = self._signature(args)
        if signature is None:
            return None
        try:
            return self._memo[signature]
        except KeyError:
            pass
        key = self.key(*args)
        executable = None if key is None else self._fetch(st, key, args)
        self._memo[signature] = executable
        return executable

    def _definition(self, statics) -> str | None:
        try:
            return self._definitions[statics]
        except KeyError:
            pass
        try:
            text = describe(statics)
        except Unstorable:
            text = None
        self._definitions[statics] = text
        return text

    def _fetch(self, st: "_store.Store", key: str, args):
        payload = st.get(key)
        if payload is not None:
            try:
                executable = _load(payload)
                _store.counts.hits += 1
                return executable
            except Exception:  # an entry of another jaxlib's making: compiled again
                st.drop(key)
        # Compiled anew, never taken from JAX's persistent cache: an executable loaded
        # from there serializes without its code ("Function ... not found" when run).
        with _no_jax_cache():
            executable = self.jitted.lower(*args).compile()
        _store.counts.misses += 1
        try:
            st.put(key, _dump(executable))
        except (ValueError, NotImplementedError, TypeError, pickle.PicklingError, OSError):
            pass  # not serializable (closed-over constants), or the disk is full: not stored
        return executable


def jit(name: str, fn, static_argnums=0, **options) -> Program:
    """``jax.jit(fn, static_argnums=static_argnums, **options)``, served by the store
    under ``name``."""
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    return Program(name, jax.jit(fn, static_argnums=static, **options), static)
