"""What a model is (private): the pure ``apply_fn(params, x)`` and the params pytree
behind whatever a user passes to ``fit``, ``fit_many``, ``predict`` or ``evaluate``
(a ``jaxnn.Model``, a plain apply function, a Flax linen or nnx Module, an Equinox
module), its trainable params and model state, its output shape, and the checks of
a run's key and initial params. The Flax and Equinox adapters live beside it
(``jaxnn._flax``, ``jaxnn._equinox``). This module trains nothing.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxnn import _equinox, _flax, _precision
from jaxnn._checks import check_mlp_input
from jaxnn.mlp import MLPApply, Model


def apply_function(model) -> Callable:
    if isinstance(model, Model):
        return model.apply
    if (linen_apply := _flax.linen_apply(model)) is not None:
        return linen_apply
    if _equinox.is_equinox_module(model):
        raise TypeError(
            "fit, predict and evaluate take an Equinox module directly (not fit_many, make_train_step)"
        )
    if _flax.is_nnx_module(model):
        raise TypeError(
            "fit, predict and evaluate take a flax.nnx Module directly; elsewhere split it first: "
            "graphdef, state = nnx.split(module); apply_fn = lambda p, x: nnx.merge(graphdef, p)(x)"
        )
    if callable(model):
        return model
    raise TypeError(
        f"model must be a jaxnn Model, a flax Module or an apply_fn(params, x), got {type(model).__name__}"
    )


def resolve_model(model, params):
    """``(apply_fn, params, nnx_module)``: the pure function and params pytree for
    ``model``; an nnx Module also comes back (to write the trained state into)."""
    if (nnx := _flax.split_nnx(model, params)) is not None:
        return *nnx, model
    if (eqx := _equinox.split_equinox(model, params)) is not None:
        return *eqx, None
    if params is None:
        raise TypeError("params is None: pass the model's parameters (e.g. model.init(key))")
    if (linen := _flax.linen_with_variables(model, params)) is not None:
        return linen, params, None
    return apply_function(model), params, None


def split_variables(apply_fn, variables) -> tuple[Any, dict | None]:
    """``(params, model_state)``. A model with a training mode (``train_apply``) takes
    Flax-style variables, ``{"params": ..., **other collections}``: the params train
    and the other collections are its state. Any other model's variables are its params."""
    if hasattr(apply_fn, "train_apply") and isinstance(variables, dict) and "params" in variables:
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}
    return variables, None


def check_host_params(params) -> None:
    """Raises for NaN or inf in params held in host memory. Params on a device are
    checked inside the first compiled call instead: reading them here would cost a
    device sync on every fit."""
    on_host = lambda a: isinstance(a, np.ndarray | np.generic | float)
    if not all(np.isfinite(a).all() for a in jax.tree.leaves(params) if on_host(a)):
        raise non_finite_params_error(
            jax.tree.map(lambda a: a if on_host(a) else np.float32(0), params)
        )


def check_key(key) -> jax.Array:
    if (
        isinstance(key, jax.Array)
        and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        and key.shape == ()
    ):
        return key
    if isinstance(key, jax.Array | np.ndarray) and key.shape == (2,) and key.dtype == np.uint32:
        return jax.random.wrap_key_data(key)
    raise TypeError(f"key must be a PRNG key from jax.random.key(seed), got {key!r}")


def output_shape(apply_fn, params, x: np.ndarray) -> tuple[int, ...]:
    if isinstance(apply_fn, _precision.ComputeApply):
        apply_fn = apply_fn.apply_fn  # the same shape in every compute mode
    if isinstance(apply_fn, MLPApply):  # known without tracing: fit's per-call cost matters
        params = apply_fn.split(params)[0]
        check_mlp_input(params, x, len(apply_fn.activations))
        return tuple(params[-1]["w"].shape[1:])
    out = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, x.shape[1]), x.dtype))
    return tuple(out.shape[1:])


def non_finite_params_error(params) -> ValueError:
    """The error for initial params with NaN or inf, naming the first bad leaf."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if not np.isfinite(np.asarray(leaf)).all():
            return ValueError(
                f"params{jax.tree_util.keystr(path)} has non-finite values (NaN or inf); expected finite "
                "initial parameters (e.g. from model.init(key))"
            )
    return ValueError(
        "params have non-finite values (NaN or inf); expected finite initial parameters"
    )
