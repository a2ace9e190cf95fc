"""Flax modules as jaxnn models (private; used by ``fit``, ``predict`` and ``evaluate``).

A ``flax.linen`` Module is already a pure function: ``module.apply(variables, x)``;
its variables are the params pytree. A ``flax.nnx`` Module holds its own state: it is
split into a graph (static, hashable) and its ``nnx.Param`` state (the params pytree),
and the trained state is written back into the module afterwards.
Flax is only imported when the model comes from it.
"""

import dataclasses
import sys
from typing import Any

import jax


def _linen_module(model) -> bool:
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(model, linen.Module)


def is_nnx_module(model) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


@dataclasses.dataclass(frozen=True)
class NNXApply:
    """``apply(state, x)`` of an nnx Module's graph: equal graphs share compiled code."""

    graphdef: Any

    def __call__(self, params, x):
        from flax import nnx

        return nnx.merge(self.graphdef, params)(x)


def linen_apply(model):
    """``module.apply`` for a linen Module (hashable by the module's fields), else None."""
    return model.apply if _linen_module(model) else None


def check_linen_variables(variables) -> None:
    if not hasattr(variables, "keys") or set(variables.keys()) != {"params"}:
        got = list(variables.keys()) if hasattr(variables, "keys") else type(variables).__name__
        raise ValueError(
            "a flax.linen Module trains with its variables from module.init(key, x), which must hold "
            f"exactly one collection, 'params'; got {got}. Modules with mutable state (e.g. "
            "batch_stats) need a training loop that threads that state: see jaxnn.make_train_step"
        )


def split_nnx(model, params):
    """For an nnx Module: ``(NNXApply, params)`` with ``params`` its Param state when
    given ``None``; else ``None``. Other state (batch statistics, RNG counters) would
    not be updated by ``fit``, so it is refused."""
    if not is_nnx_module(model):
        return None
    from flax import nnx

    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    if others := [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(rest)]:
        raise ValueError(
            f"fit trains an nnx Module's nnx.Param state only; this module also holds {others[:5]}, which "
            "fit would not update. Remove it (e.g. pass rngs only to init) or write the loop with "
            "jaxnn.make_train_step"
        )
    return NNXApply(graphdef), state if params is None else params


def update_nnx(model, params) -> None:
    """Writes trained params back into the nnx Module ``model``."""
    from flax import nnx

    nnx.update(model, params)
