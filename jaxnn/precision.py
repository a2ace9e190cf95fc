"""Mixed precision: compute in bfloat16, keep float32 master parameters and loss.

``with_compute_dtype(apply_fn, "bfloat16")`` casts the parameters and inputs to
bfloat16 for the forward (and so the backward) pass and returns float32 outputs, so
the loss, the gradients' accumulation into the params and the optimizer state stay
float32. bfloat16 is the TPU's native matrix type and the default there; on GPUs it
runs the tensor cores at full rate. It is not for tiny networks on the CPU, where it
is slower than float32.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def resolve_compute_dtype(compute_dtype: str | None) -> str:
    """``"auto"`` (or ``None``) means bfloat16 on TPU and float32 elsewhere."""
    if compute_dtype in (None, "auto"):
        return "bfloat16" if jax.default_backend() == "tpu" else "float32"
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be 'auto' or one of {list(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    return compute_dtype


@dataclasses.dataclass(frozen=True)
class CastApply:
    """``apply_fn`` run in ``dtype``, returning float32 (hashable by value)."""

    apply_fn: Callable
    dtype: str

    def __call__(self, params, x):
        cast = lambda a: a.astype(self.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
        out = self.apply_fn(jax.tree.map(cast, params), cast(x))
        return out.astype(jnp.float32)


def with_compute_dtype(apply_fn: Callable, compute_dtype: str | None) -> Callable:
    """``apply_fn`` itself for float32, else a :class:`CastApply`."""
    dtype = resolve_compute_dtype(compute_dtype)
    return apply_fn if dtype == "float32" else CastApply(apply_fn, dtype)
