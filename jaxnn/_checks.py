"""Small argument checks shared by the public entry points (private)."""

import os

import jax
import jax.numpy as jnp
import numpy as np

MAX_ELEMENTS = 2**31 - 1  # per array: XLA indexes with int32 on some backends, and aborts past it
MAX_EPOCHS = 2**31 - 1  # the loop counts epochs and steps in int32


def positive_int(value, name: str, upper: int | None = None) -> int:
    """``value`` as an int in ``[1, upper]``; TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1 or (upper is not None and value > upper):
        bound = f"in [1, {upper}]" if upper is not None else ">= 1"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_elements(count: int, what: str) -> None:
    """Raises before an array of ``count`` elements is made that XLA could not index."""
    if count > MAX_ELEMENTS:
        raise ValueError(f"{what} is more than {MAX_ELEMENTS} elements in one array")


def float_dtype() -> np.dtype:
    """float32, or float64 with ``jax_enable_x64``: ``jnp.result_type(float)``, in a
    tenth of its time (fit's per-call cost)."""
    return np.dtype(np.float64 if jax.config.jax_enable_x64 else np.float32)


DISTRIBUTION = "jaxnn-mlp"  # the name on the package index; "jaxnn" there is another project


def install_hint(extra: str) -> str:
    """The command that installs jaxnn's optional ``extra`` (never ``jaxnn[...]``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


# the batch checks every loss and metric makes


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_weights(weights, n: int):
    if weights is None:
        return None
    if jnp.shape(weights) != (n,):
        raise ValueError(
            f"weights must have shape ({n},) (one per example), got {jnp.shape(weights)}"
        )
    return weights


def _check_numeric(a, what: str, name: str) -> None:
    dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
    numeric = (
        jnp.issubdtype(dtype, jnp.integer)
        or jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.bool_)
    )
    if not numeric:
        raise TypeError(f"{name}: {what} must be a numeric (int or float) array, got dtype {dtype}")


def check_batch(predictions, targets, name: str) -> None:
    """Numeric arrays with at least one example (an empty batch has no mean)."""
    _check_numeric(predictions, "predictions", name)
    _check_numeric(targets, "targets", name)
    if jnp.ndim(predictions) >= 1 and jnp.shape(predictions)[0] == 0:
        raise ValueError(f"{name}: the batch is empty (0 examples); expected at least one")


def check_same_shape(predictions, targets, name: str) -> None:
    check_batch(predictions, targets, name)
    if jnp.shape(predictions) != jnp.shape(targets):
        hint = ""
        if jnp.ndim(predictions) == jnp.ndim(targets) + 1 and jnp.shape(predictions)[-1] == 1:
            hint = (
                " (reshape targets with y[:, None]: (n,) against (n, 1) would broadcast to (n, n))"
            )
        raise ValueError(
            f"{name}: predictions {jnp.shape(predictions)} and targets {jnp.shape(targets)} "
            f"must have the same shape{hint}"
        )


def check_mlp_input(params, x: jax.Array, depth: int) -> None:
    """Raises when ``params`` is not an MLP of ``depth`` layers or ``x`` does not fit."""
    if not isinstance(params, list | tuple) or len(params) != depth:
        raise ValueError(
            f"params must be a list of {depth} layers ({{'w', 'b'}} dicts), got "
            f"{type(params).__name__} of length {len(params) if hasattr(params, '__len__') else '?'}"
        )
    n_in = params[0]["w"].shape[0]
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"x must be a numeric (int or float) array, got dtype {dtype}")
    if jnp.ndim(x) not in (1, 2):
        raise ValueError(
            f"x must have shape (batch, {n_in}) or ({n_in},), got shape {jnp.shape(x)}"
        )
    if jnp.shape(x)[-1] != n_in:
        raise ValueError(
            f"x has {jnp.shape(x)[-1]} features but the first layer expects {n_in}: "
            f"expected shape (batch, {n_in}) or ({n_in},), got {jnp.shape(x)}"
        )


def device_memory() -> int | None:
    """Bytes the default device can hold: its allocator's limit, or (a CPU) the host's
    memory; ``None`` where neither is known."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(parts: dict, what: str) -> None:
    """Raises before any work when the estimated ``parts`` (``{what it is: bytes}``)
    of ``what`` hold more than the device's memory, naming each part."""
    total, limit = sum(parts.values()), device_memory()
    if limit is not None and total > limit:
        named = "; ".join(f"{name}: {_gib(size)}" for name, size in parts.items())
        raise ValueError(
            f"{what} would hold about {_gib(total)} ({named}), more than the device's {_gib(limit)}: "
            "use fewer configurations, slots or epochs, or a smaller model"
        )
