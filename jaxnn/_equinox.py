"""Equinox modules as jaxnn models (private; used by ``fit``, ``predict`` and ``evaluate``).

An ``eqx.Module`` is its own parameters: its floating-point arrays train (``eqx.partition``
by ``eqx.is_inexact_array``) and the rest is a static skeleton. Equinox models map one
example; jaxnn maps them over the batch with ``jax.vmap(..., axis_name="batch")``, the
axis ``eqx.nn.BatchNorm(axis_name="batch")`` expects. The calling conventions are
Equinox's own:

- ``model(x)``, or ``model(x, key=key)`` when ``__call__`` takes ``key`` (dropout);
  pass ``params=None`` to ``fit``.
- ``model(x, state, key=key) -> (y, state)`` for a model with ``eqx.nn.State`` (batch
  norm): ``model, state = eqx.nn.make_with_state(Net)(...)``; pass ``params=state``.

Training runs the model as it is; inference (``predict``, ``evaluate``, validation)
runs ``eqx.nn.inference_mode(model)`` (no dropout, running statistics). ``fit``
returns the trained arrays as ``params`` (``{"params": ..., "eqx_state": ...}`` with
state); ``eqx.combine(params, skeleton)`` or ``jaxnn.predict(model, params, x)`` uses
them. Each example of a step gets its own key, split from the step's ``dropout`` key.
Equinox is an optional extra, imported only when the model comes from it.
"""

import dataclasses
import inspect
import sys
from typing import Any

import jax


def is_equinox_module(model) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


@dataclasses.dataclass(frozen=True)
class EqxApply:
    """``apply(variables, x)``: the model in inference mode over a batch."""

    skeleton: Any  # the inference-mode model without its arrays
    train_skeleton: Any  # the model as given, without its arrays
    stateful: bool
    takes_key: bool

    def _run(self, skeleton, variables, x, key):
        import equinox as eqx

        params, state = (
            (variables["params"], variables["eqx_state"]) if self.stateful else (variables, None)
        )
        # a clone: Equinox marks a State used once consumed, and jaxnn's loop keeps its own
        if self.stateful:
            leaves, tree = jax.tree.flatten(state)
            state = jax.tree.unflatten(tree, leaves)
        model = eqx.combine(params, skeleton)
        keys = jax.random.split(key, x.shape[0]) if key is not None else None
        extra = (state,) if self.stateful else ()

        def one(xi, ki):
            return model(xi, *extra, key=ki) if self.takes_key else model(xi, *extra)

        in_keys = 0 if keys is not None else None
        out = (0, None) if self.stateful else 0
        return jax.vmap(one, in_axes=(0, in_keys), out_axes=out, axis_name="batch")(x, keys)

    def __call__(self, variables, x):
        out = self._run(self.skeleton, variables, x, None)
        return out[0] if self.stateful else out

    def train_apply(self, variables, x, key):
        out = self._run(self.train_skeleton, variables, x, key)
        return (out[0], {"eqx_state": out[1]}) if self.stateful else (out, {})


def split_equinox(model, params):
    """For an Equinox module: ``(EqxApply, variables)``; else ``None``. ``params`` is
    ``None`` (the model's own arrays), its ``eqx.nn.State``, or what ``fit`` returned."""
    if not is_equinox_module(model):
        return None
    import equinox as eqx

    arrays, train_skeleton = eqx.partition(model, eqx.is_inexact_array)
    if params is None:
        variables = arrays
    elif isinstance(params, eqx.nn.State):
        variables = {"params": arrays, "eqx_state": params}
    elif type(params) is type(model) or (
        isinstance(params, dict) and set(params) == {"params", "eqx_state"}
    ):
        variables = params  # trained by fit
    else:
        raise TypeError(
            "an Equinox model takes params=None, its eqx.nn.State (from eqx.nn.make_with_state), or the params "
            f"fit returned for it; got {type(params).__name__}"
        )
    skeleton = eqx.partition(eqx.nn.inference_mode(model), eqx.is_inexact_array)[1]
    takes_key = "key" in inspect.signature(model.__call__).parameters
    return EqxApply(skeleton, train_skeleton, isinstance(variables, dict), takes_key), variables
