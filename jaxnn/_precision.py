"""Running a model in a compute mode (private): what ``jaxnn.precision`` describes."""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnn.precision import COMPUTE_DTYPES, MODES


def resolve_compute_dtype(compute_dtype: str | None) -> str:
    """``"auto"`` (or ``None``) means bfloat16 on TPU and float32 elsewhere."""
    if compute_dtype in (None, "auto"):
        return "bfloat16" if jax.default_backend() == "tpu" else "float32"
    if compute_dtype not in MODES:
        raise ValueError(
            f"compute_dtype must be 'auto' or one of {list(COMPUTE_DTYPES)}, got {compute_dtype!r}"
        )
    return compute_dtype


@dataclasses.dataclass(frozen=True)
class ComputeApply:
    """``apply_fn`` run in one compute mode, returning float32 (hashable by value, so
    equal settings share compiled code)."""

    apply_fn: Callable
    mode: str

    def __call__(self, params, x):
        dtype, matmul = MODES[self.mode]
        # Set while tracing: every dot the model makes gets this precision, and
        # autodiff gives the backward pass's dots the same.
        with jax.default_matmul_precision(matmul):
            if dtype == "float32":
                return self.apply_fn(params, x)
            cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
            return self.apply_fn(jax.tree.map(cast, params), cast(x)).astype(jnp.float32)


class ComputeTrainApply(ComputeApply):
    """A :class:`ComputeApply` of a model with a training mode (dropout, batch norm)."""

    def train_apply(self, variables, x, key):
        dtype, matmul = MODES[self.mode]
        with jax.default_matmul_precision(matmul):
            if dtype == "float32":
                return self.apply_fn.train_apply(variables, x, key)
            cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
            y, updates = self.apply_fn.train_apply(jax.tree.map(cast, variables), cast(x), key)
            # state stays in its own dtype, like params
            keep = lambda new, old: new.astype(old.dtype)
            updates = {c: jax.tree.map(keep, u, variables[c]) for c, u in updates.items()}
            return y.astype(jnp.float32), updates


def with_compute_dtype(apply_fn: Callable, compute_dtype: str | None) -> ComputeApply:
    """``apply_fn`` in the mode ``compute_dtype`` names (see the table above)."""
    kind = ComputeTrainApply if hasattr(apply_fn, "train_apply") else ComputeApply
    return kind(apply_fn, resolve_compute_dtype(compute_dtype))
