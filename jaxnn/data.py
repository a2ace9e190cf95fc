"""Data at the boundary: validation, splits, standardisation, labels and datasets.

Arrays are checked here once, on the host, with errors that name the first bad row
and column; everything after this trusts its inputs. Batching and shuffling happen on
the device inside the compiled training loop (``jaxnn.train``), not here.
"""

import hashlib
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _programs
from jaxnn._checks import check_elements, float_dtype, install_hint, positive_int
from jaxnn.distributed import fetch


def _as_numeric(a, name: str) -> np.ndarray | jax.Array:
    if isinstance(a, jax.Array):  # stays on its device: no round trip through the host
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            raise TypeError(f"{name} must be a numeric array, got PRNG keys")
        arr = a
    elif type(a).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{name} is a scipy sparse matrix; pass it dense ({name}.toarray()), or rows from disk"
        )
    else:
        try:
            arr = np.asarray(a)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name} must be a numeric array, could not convert it: {e}") from None
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a numeric array (int or float), got dtype {arr.dtype}")
    return arr


def _to_float(arr: np.ndarray) -> np.ndarray:
    dtype = float_dtype()
    if arr.dtype == dtype:
        return arr
    # values too large for float32 become inf: _check_finite says where
    with np.errstate(over="ignore"):
        return arr.astype(dtype)


class Summary(NamedTuple):
    """What the boundary checks read from an array: whether every value is finite,
    and its smallest and largest value."""

    finite: bool
    low: float
    high: float


def _summarize(a):
    finite = jnp.isfinite(a).all() if jnp.issubdtype(a.dtype, jnp.floating) else jnp.bool_(True)
    return finite, a.min(), a.max()


_device_summary = _programs.jit("summary", _summarize, ())


# id -> (weak reference, Summary) of jax arrays checked before: they are immutable, so
# an array passed again (a training loop, cross-validation) costs no device round trip.
_summaries: dict[int, tuple[weakref.ref, Summary]] = {}


def _forget(store: dict, key: int):
    """A weak reference's callback: drops ``store[key]`` when its array dies."""
    return lambda _: store.pop(key, None)


def summary(arr) -> Summary:
    """The :class:`Summary` of a non-empty numeric array. A ``jax.Array`` is reduced on
    its device in one compiled call and one transfer, and remembered while it lives."""
    if not isinstance(arr, jax.Array):
        finite = not np.issubdtype(arr.dtype, np.floating) or bool(np.isfinite(arr).all())
        return Summary(finite, arr.min().item(), arr.max().item())
    hit = _summaries.get(id(arr))
    if hit is not None and hit[0]() is arr:
        return hit[1]
    finite, low, high = fetch(_device_summary(arr))
    out = Summary(bool(finite), low.item(), high.item())
    _summaries[id(arr)] = (weakref.ref(arr, _forget(_summaries, id(arr))), out)
    return out


# Host arrays that fit uploaded to an accelerator: id -> (weak reference to the array,
# digest of its bytes, the checked device copy). Passing the same data again (a
# training loop, a sweep) skips the upload and the checks when the bytes are unchanged.
UPLOAD_CACHE_ENTRIES = 4
UPLOAD_CACHE_MIN_BYTES = 1 << 20
_uploads: dict[int, tuple[weakref.ref, bytes, jax.Array]] = {}
_hash_pool: ThreadPoolExecutor | None = None


def _caches_uploads() -> bool:
    """Whether host data is uploaded through the cache: off on the CPU (no upload) and
    in multi-process runs (each process feeds its own rows)."""
    return jax.default_backend() != "cpu" and jax.process_count() == 1


def clear_uploads() -> None:
    """Forgets every cached upload (their device memory is freed with them)."""
    _uploads.clear()


def _digest(arr: np.ndarray) -> bytes:
    """SHA-256 of the array's dtype, shape and bytes, hashed in 8 MiB pieces on a
    thread pool (hashlib releases the GIL), so on a many-core host it costs a fraction
    of the upload it saves."""
    global _hash_pool
    buf = memoryview(np.ascontiguousarray(arr)).cast("B")
    piece = 8 << 20
    if _hash_pool is None:
        _hash_pool = ThreadPoolExecutor(
            max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="jaxnn-hash"
        )
    parts = _hash_pool.map(
        lambda i: hashlib.sha256(buf[i : i + piece]).digest(), range(0, len(buf), piece)
    )
    return hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode() + b"".join(parts)).digest()


def _upload(arr: np.ndarray, name: str) -> jax.Array:
    """``arr`` (float converted, checked) on the default device; the same bytes passed
    again return the same device array without a transfer or a check."""
    digest = _digest(arr)
    hit = _uploads.get(id(arr))
    if hit is not None and hit[0]() is arr and hit[1] == digest:
        _uploads[id(arr)] = _uploads.pop(id(arr))  # most recently used last
        return hit[2]
    on_device = jax.device_put(_to_float(arr))
    _check_finite(on_device, name, arr)  # on the device: one reduction, no host pass over the data
    _uploads.pop(id(arr), None)
    while len(_uploads) >= UPLOAD_CACHE_ENTRIES:
        _uploads.pop(next(iter(_uploads)))
    _uploads[id(arr)] = (weakref.ref(arr, _forget(_uploads, id(arr))), digest, on_device)
    return on_device


def _check_finite(arr, name: str, original=None) -> None:
    """Raises naming the first NaN or inf of ``arr``; ``original``: the array before a
    cast to float32, to tell a value beyond float32's range from a non-finite one."""
    if np.issubdtype(arr.dtype, np.floating) and not (
        summary(arr).finite if isinstance(arr, jax.Array) else np.isfinite(arr).all()
    ):
        arr = np.asarray(arr)
        pos = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        where = f"row {pos[0]}" + (f", column {pos[1]}" if len(pos) > 1 else "")
        if original is not None and np.isfinite(original[pos]):
            raise ValueError(
                f"{name} has a value beyond float32's range ({original[pos]}) at {where}; rescale it "
                f"(float32 holds magnitudes up to {np.finfo(np.float32).max:.3g})"
            )
        raise ValueError(
            f"{name} has a non-finite value ({arr[pos]}) at {where}; expected finite numbers"
        )


def validate(x, y=None, *, x_name: str = "x", y_name: str = "y", to_device: bool = False):
    """Checks and converts training data; returns ``(x, y)``.

    NumPy inputs (and lists) come back as NumPy arrays; JAX arrays stay JAX arrays on
    their device, checked there.

    Args:
      x: numeric array of shape ``(samples, features)``; converted to float32
        (float64 when ``jax_enable_x64`` is on).
      y: optional targets with ``samples`` rows: float targets become float32,
        integer labels stay integers (int32).
      to_device: on an accelerator, return large float NumPy arrays as checked device
        copies, uploaded once per content (``fit`` does this; see ``_upload``).

    Returns:
      ``(x, y)``; ``y`` is ``None`` when not given.

    Raises:
      TypeError: a non-numeric array (strings, objects).
      ValueError: wrong rank, no rows or columns, mismatched lengths, NaN or inf (the
        message names the first bad row and column), labels too large for int32.
    """
    x = _as_numeric(x, x_name)
    if x.ndim != 2:
        hint = f"; for one feature use {x_name}[:, None]" if x.ndim == 1 else ""
        raise ValueError(f"{x_name} must be 2-D (samples, features), got shape {x.shape}{hint}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{x_name} must have at least one row and one column, got shape {x.shape}")
    x = _float_checked(x, x_name, to_device)
    return x, None if y is None else validate_targets(
        y, x.shape, x_name=x_name, y_name=y_name, to_device=to_device
    )


def validate_targets(
    y, x_shape: tuple, *, x_name: str = "x", y_name: str = "y", to_device: bool = False
):
    """:func:`validate`'s checks of ``y`` alone, for inputs of shape ``x_shape``."""
    y = _as_numeric(y, y_name)
    if y.ndim not in (1, 2) or y.shape[0] != x_shape[0]:
        raise ValueError(
            f"{y_name} must have shape ({x_shape[0]},) or ({x_shape[0]}, outputs) to match "
            f"{x_name} {tuple(x_shape)}, got {y.shape}"
        )
    if np.issubdtype(y.dtype, np.integer):
        if y.dtype != np.int32:
            low, high = summary(y)[1:]
            if low < np.iinfo(np.int32).min or high > np.iinfo(np.int32).max:
                raise ValueError(f"{y_name} has integer labels outside the int32 range")
            y = y.astype(np.int32)
    else:
        y = _float_checked(y, y_name, to_device)
    return y


def _float_checked(arr, name: str, to_device: bool):
    if (
        to_device
        and isinstance(arr, np.ndarray)
        and arr.nbytes >= UPLOAD_CACHE_MIN_BYTES
        and _caches_uploads()
    ):
        return _upload(arr, name)
    cast = _to_float(arr)
    # after the cast: float64 overflow is caught
    _check_finite(cast, name, arr if cast is not arr else None)
    return cast


def train_test_split(key: jax.Array, x, y, test_fraction: float = 0.2):
    """Shuffles rows with ``key`` and splits them; returns ``(x_train, x_test, y_train, y_test)``.

    Example:
      >>> x, y = make_regression(jax.random.key(0), n=10)
      >>> [a.shape[0] for a in train_test_split(jax.random.key(1), x, y, 0.2)]
      [8, 2, 8, 2]
    """
    x, y = validate(x, y)
    train, test = split_rows(key, x.shape[0], test_fraction)
    return x[train], x[test], y[train], y[test]


def split_rows(key: jax.Array, n: int, test_fraction: float = 0.2):
    """The row indices ``(train, test)`` that :func:`train_test_split` takes with the same
    ``key``, ``n`` rows and fraction: for splitting other arrays the same way, or three ways.

    Example:
      >>> [r.tolist() for r in split_rows(jax.random.key(1), 5, 0.4)]
      [[0, 1, 4], [3, 2]]
    """
    n = positive_int(n, "n")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {test_fraction!r:.80}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(
            f"test_fraction={test_fraction} of {n} rows leaves an empty split; use more rows or another fraction"
        )
    perm = np.asarray(_permutation(n, key))
    return perm[n_test:], perm[:n_test]


class Standardizer(NamedTuple):
    """Per-feature ``(x - mean) / scale``, with statistics from the training split."""

    mean: np.ndarray  # shape (features,)
    scale: np.ndarray  # shape (features,); 1 where a feature is constant

    @classmethod
    def fit(cls, x_train) -> "Standardizer":
        x, _ = validate(x_train, x_name="x_train")
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0).astype(x.dtype))

    def __call__(self, x) -> np.ndarray:
        x, _ = validate(x)
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"x has {x.shape[1]} features, the standardizer was fitted on {self.mean.shape[0]}"
            )
        return (x - self.mean) / self.scale


def standardize(x_train, *others):
    """Standardises ``x_train`` and any ``others`` with ``x_train``'s statistics only
    (fitting on test data would leak it into training). Returns the arrays in order."""
    scaler = Standardizer.fit(x_train)
    return tuple(scaler(a) for a in (x_train, *others))


def one_hot(labels, num_classes: int) -> np.ndarray:
    """Integer labels ``(n,)`` to float32 one-hot rows ``(n, num_classes)``."""
    num_classes = positive_int(num_classes, "num_classes")
    labels = _as_numeric(labels, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape} and dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]"
        )
    check_elements(labels.shape[0] * num_classes, f"one_hot: {labels.shape[0]} x {num_classes}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_regression(key: jax.Array, n: int = 1000, features: int = 3, noise: float = 0.1):
    """The seed's example data: ``n`` records of ``features`` features, target in (0, 1).

    ``x`` is standard normal; the target is a smooth nonlinear function squashed by a
    sigmoid (so a sigmoid output can fit it), with Gaussian noise of std ``noise``
    added before the squashing. A straight line cannot fit it well; an MLP can.

    Returns:
      ``(x, y)``: float32 arrays of shape ``(n, features)`` and ``(n, 1)``.
    """
    n, features = positive_int(n, "n"), positive_int(features, "features")
    check_elements(n * features, f"make_regression: {n} x {features}")
    if (
        isinstance(noise, bool)
        or not isinstance(noise, int | float)
        or not noise >= 0
        or noise == np.inf
    ):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    # Operation by operation, not one program: XLA fuses one program's operations and
    # rounds differently (the targets' last bits), and these are the values jaxnn has
    # always made (tests/test_pinned.py). JAX's persistent cache serves the programs.
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, features))
    f = (
        1.5 * jnp.sin(1.5 * x).sum(axis=1)
        + x[:, 0] * x[:, (1 % features)]
        - 0.5 * jnp.square(x[:, -1])
        + noise * jax.random.normal(kn, (n,))
    )
    return np.asarray(x), np.asarray(jax.nn.sigmoid(f))[:, None]


# one program (served by the program store), not one per operation
_permutation = _programs.jit("permutation", lambda n, key: jax.random.permutation(key, n))


class Dataset(NamedTuple):
    """A bundled dataset: ``x`` float32 ``(n, features)``, ``y`` labels ``(n,)`` int32
    (classification) or float32 ``(n, 1)`` (regression)."""

    x: np.ndarray
    y: np.ndarray
    task: str  # "binary", "multiclass" or "regression"
    feature_names: list[str]
    target_names: list[str]


DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes")


def load_dataset(name: str) -> Dataset:
    """Loads one of scikit-learn's bundled datasets (shipped inside its package: no
    download). Names: iris, wine, breast_cancer, digits, diabetes.

    Requires scikit-learn (``pip install 'jaxnn-mlp[examples]'``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    try:
        from sklearn import datasets
    except ImportError:
        raise ImportError(
            f"load_dataset({name!r}) needs scikit-learn: pip install scikit-learn (or {install_hint('examples')})"
        ) from None
    raw = getattr(datasets, f"load_{name}")()
    x = raw.data.astype(np.float32)
    feature_names = [str(f) for f in getattr(raw, "feature_names", range(x.shape[1]))]
    if name == "diabetes":
        return Dataset(
            x, raw.target.astype(np.float32)[:, None], "regression", feature_names, ["target"]
        )
    target_names = [str(t) for t in raw.target_names]
    task = "binary" if len(target_names) == 2 else "multiclass"
    return Dataset(x, raw.target.astype(np.int32), task, feature_names, target_names)
