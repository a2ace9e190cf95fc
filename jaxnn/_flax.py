"""Flax modules as jaxnn models (private; used by ``fit``, ``predict`` and ``evaluate``).

A ``flax.linen`` Module is already a pure function: ``module.apply(variables, x)``.
One whose ``__call__`` takes ``train`` has a training mode: ``fit`` calls it with
``train=True``, ``rngs={"dropout": key}`` (the step's key, ``jaxnn.rng``) and its
collections besides ``params`` (e.g. ``batch_stats``) mutable; ``predict`` and
validation with ``train=False``.

A ``flax.nnx`` Module holds its own state: it is split into a graph (static,
hashable) and its ``nnx.Param`` state (the params pytree). A module with more state
(``nnx.BatchNorm``'s statistics, ``nnx.Dropout``'s RNG stream) is split twice, in
its train and its eval mode; every step gives each of its RNG streams a key from
the ``dropout`` stream, so its masks follow jaxnn's PRNG contract, and the trained
state is written back into the module afterwards (which is left in eval mode).
Flax is only imported when the model comes from it.
"""

import dataclasses
import inspect
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


@dataclasses.dataclass(frozen=True)
class NNXTrainApply:
    """An nnx Module with state besides its params. Its variables are ``{"params":
    Param state, "nnx": other state, "nnx_rngs": RNG state}``."""

    eval_graph: Any
    train_graph: Any

    def __call__(self, variables, x):
        from flax import nnx

        return nnx.merge(
            self.eval_graph, variables["params"], variables["nnx_rngs"], variables["nnx"]
        )(x)

    def train_apply(self, variables, x, key):
        from flax import nnx

        leaves, tree = jax.tree.flatten(variables["nnx_rngs"])
        is_key = lambda a: jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
        keys = [jax.random.fold_in(key, i) if is_key(a) else a for i, a in enumerate(leaves)]
        # Rebuilt leaf by leaf: nnx lets a module mutate only Variables made in the current trace.
        params, rest = (jax.tree.map(lambda a: a, variables[c]) for c in ("params", "nnx"))
        module = nnx.merge(self.train_graph, params, jax.tree.unflatten(tree, keys), rest)
        y = module(x)
        # the RNG state stays as it was
        return y, {"nnx": nnx.split(module, nnx.Param, nnx.RngState, ...)[3]}


@dataclasses.dataclass(frozen=True)
class LinenApply:
    """A linen Module whose ``__call__`` takes ``train``: ``train=False`` here."""

    module: Any

    def __call__(self, variables, x):
        return self.module.apply(variables, x, train=False)


@dataclasses.dataclass(frozen=True)
class LinenTrainApply(LinenApply):
    """... and its training mode, with ``collections`` mutable."""

    collections: tuple[str, ...]

    def train_apply(self, variables, x, key):
        if not self.collections:
            return self.module.apply(variables, x, train=True, rngs={"dropout": key}), {}
        y, updates = self.module.apply(
            variables, x, train=True, rngs={"dropout": key}, mutable=list(self.collections)
        )
        return y, dict(updates)


def linen_apply(model):
    """``module.apply`` for a linen Module (hashable by the module's fields), else None."""
    return model.apply if _linen_module(model) else None


def linen_with_variables(model, variables):
    """For a linen Module: its apply function for these variables (see the module
    docstring), else ``None``."""
    if not _linen_module(model):
        return None
    if not hasattr(variables, "keys") or "params" not in variables:
        got = list(variables.keys()) if hasattr(variables, "keys") else type(variables).__name__
        raise ValueError(
            f"a flax.linen Module takes its variables from module.init(key, x), with 'params'; got {got}"
        )
    others = tuple(sorted(k for k in variables if k != "params"))
    if "train" in inspect.signature(model.__call__).parameters:
        return LinenTrainApply(model, others)
    if others:
        raise ValueError(
            f"this flax.linen Module has state besides 'params' ({list(others)}); for fit to update it, its "
            "__call__ must take a `train` argument (fit calls it with train=True, rngs={'dropout': key} and "
            f"mutable={list(others)}; predict with train=False)"
        )
    return model.apply


def split_nnx(model, params):
    """For an nnx Module: ``(apply, variables)``, the variables being the module's
    own when ``params`` is ``None``; else ``None``."""
    if not is_nnx_module(model):
        return None
    from flax import nnx

    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    if not jax.tree.leaves(rest):
        return NNXApply(graphdef), state if params is None else params
    model.eval()
    eval_graph = nnx.split(model, nnx.Param, nnx.RngState, ...)[0]
    model.train()
    train_graph, state, rngs, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    model.eval()
    variables = {"params": state, "nnx_rngs": rngs, "nnx": rest}
    return NNXTrainApply(eval_graph, train_graph), variables if params is None else params


def update_nnx(model, variables) -> None:
    """Writes trained variables back into the nnx Module ``model``."""
    from flax import nnx

    if isinstance(variables, dict) and "nnx" in variables:
        nnx.update(model, variables["params"], variables["nnx_rngs"], variables["nnx"])
    else:
        nnx.update(model, variables)
