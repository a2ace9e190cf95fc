"""The seed's ideas made visible: forward propagation layer by layer, and a
hand-written backward propagation.

``explain`` prints what the seed describes in words (``X (100, 3) · W1 (3, 4) + b1 ->
Z1 (100, 4) -> relu -> A1``). ``backprop`` is the chain rule written out with the
seed's names (dZ, dW, db); it is for teaching and for checking, and a test proves it
equals ``jax.grad``. Training always uses ``jax.grad``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _programs, losses
from jaxnn import activations as act
from jaxnn._checks import check_mlp_input
from jaxnn.mlp import MLPApply, Model, Params


class Layer(NamedTuple):
    """One layer of a forward pass: ``Z = A_prev · W + b``, ``A = activation(Z)``."""

    z: jax.Array  # shape (batch, n_out)
    a: jax.Array  # shape (batch, n_out)
    w_shape: tuple[int, int]
    activation: str
    num_params: int
    norm: str | None = None  # "batch" or "layer" between Z and the activation
    dropout: float = 0.0  # the rate after the activation (in training only)


class Explanation(NamedTuple):
    """The forward pass of a batch; ``str()`` gives the seed-style walk-through."""

    x_shape: tuple[int, ...]
    layers: list[Layer]

    @property
    def output(self) -> jax.Array:
        return self.layers[-1].a

    def __str__(self) -> str:
        lines = [f"X {self.x_shape}"]
        prev = "X"
        for i, layer in enumerate(self.layers, 1):
            lines.append(
                f"Z{i} = {prev} · W{i} {layer.w_shape} + b{i} ({layer.w_shape[1]},) -> "
                f"{tuple(layer.z.shape)}   [{layer.num_params} parameters]"
            )
            inner = f"{layer.norm}norm(Z{i})" if layer.norm else f"Z{i}"
            drop = f"   then dropout {layer.dropout:g} (training only)" if layer.dropout else ""
            lines.append(f"A{i} = {layer.activation}({inner}) -> {tuple(layer.a.shape)}{drop}")
            prev = f"A{i}"
        lines.append(
            f"output: A{len(self.layers)}; total parameters: {sum(l.num_params for l in self.layers)}"
        )
        return "\n".join(lines)


def _activations_of(model: Model) -> tuple:
    if not isinstance(model.apply, MLPApply):
        raise TypeError("explain and backprop need a model built by jaxnn.mlp")
    return model.apply.activations


def explain(model: Model, params: Params, x) -> Explanation:
    """Runs the forward pass layer by layer and records every Z and A (in inference
    mode: batch norm by its running statistics, no dropout).

    Args:
      model: a model from :func:`jaxnn.mlp`.
      params: its parameters (variables, for batch norm).
      x: a batch of shape ``(batch, features)``.

    Returns:
      An :class:`Explanation`; print it to read the walk-through.

    Example:
      >>> import jaxnn
      >>> model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
      >>> params = model.init(jax.random.key(0))
      >>> print(explain(model, params, jnp.ones((100, 3))))
      X (100, 3)
      Z1 = X · W1 (3, 4) + b1 (4,) -> (100, 4)   [16 parameters]
      A1 = relu(Z1) -> (100, 4)
      Z2 = A1 · W2 (4, 4) + b2 (4,) -> (100, 4)   [20 parameters]
      A2 = relu(Z2) -> (100, 4)
      Z3 = A2 · W3 (4, 1) + b3 (1,) -> (100, 1)   [5 parameters]
      A3 = sigmoid(Z3) -> (100, 1)
      output: A3; total parameters: 41
    """
    acts = _activations_of(model)
    x = _on_device(x)
    variables, params = params, model.apply.split(params)[0]
    check_mlp_input(params, x, len(acts))
    if x.ndim != 2:
        raise ValueError(f"x must be a batch of shape (batch, features), got {x.shape}")
    rates = model.apply.dropout or (0.0,) * (len(acts) - 1)
    layers = []
    for i, ((z, a), layer, f) in enumerate(
        zip(_layers(model.apply, variables, x), params, acts, strict=True)
    ):
        hidden = i < len(acts) - 1
        size = sum(int(v.size) for v in layer.values())
        norm, rate = (model.apply.norm, rates[i]) if hidden else (None, 0.0)
        layers.append(
            Layer(z, a, tuple(layer["w"].shape), act.activation_name(f), size, norm, rate)
        )
    return Explanation(tuple(x.shape), layers)


def _activation_backward(f, dA, z, a):
    """dZ = dA * f'(Z), written out per activation (softmax ones use their Jacobian)."""
    if f is act.identity:
        return dA
    if f is act.relu:
        return dA * (z > 0)
    if f is act.leaky_relu:
        return dA * jnp.where(z > 0, 1.0, 0.01)
    if f is act.elu:
        return dA * jnp.where(z > 0, 1.0, jnp.exp(z))
    if f is act.sigmoid:
        return dA * a * (1 - a)
    if f is act.tanh:
        return dA * (1 - a**2)
    if f is act.softplus:
        return dA * jax.nn.sigmoid(z)
    if f is act.gelu:
        c = jnp.sqrt(2 / jnp.pi)
        t = jnp.tanh(c * (z + 0.044715 * z**3))
        return dA * (0.5 * (1 + t) + 0.5 * z * (1 - t**2) * c * (1 + 3 * 0.044715 * z**2))
    if f is act.softmax:
        return a * (dA - (dA * a).sum(-1, keepdims=True))
    if f is act.log_softmax:
        return dA - jnp.exp(a) * dA.sum(-1, keepdims=True)
    raise ValueError(
        f"backprop has no hand-written derivative for {act.activation_name(f)!r}; supported: {sorted(act.ACTIVATIONS)}"
    )


def _loss_backward(name: str, a, y):
    """dA = dLoss/dA for a batch mean over n examples (and k outputs per example)."""
    n = a.shape[0]
    k = a.size // n
    if name == "mse":
        return 2 * (a - y) / (n * k)
    if name == "rmse":
        r = losses.rmse(a, y)
        return jnp.where(r > 0, (a - y) / (n * k * jnp.where(r > 0, r, 1.0)), 0.0)
    if name == "mae":
        return jnp.sign(a - y) / (n * k)
    if name == "binary_cross_entropy":
        eps = 1e-7
        inside = (a > eps) & (a < 1 - eps)  # the loss clips p; no gradient where clipped
        return jnp.where(inside, (a - y) / (a * (1 - a)), 0.0) / (n * k)
    if name == "binary_cross_entropy_with_logits":
        return (jax.nn.sigmoid(a) - y) / (n * k)
    if name == "softmax_cross_entropy":
        target = jax.nn.one_hot(y, a.shape[-1]) if y.ndim == a.ndim - 1 else y
        return (jax.nn.softmax(a) - target) / n
    raise ValueError(f"backprop supports the losses {sorted(_BACKPROP_LOSSES)}, got {name!r}")


_BACKPROP_LOSSES = (
    "mse",
    "rmse",
    "mae",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "softmax_cross_entropy",
)


def backprop(model: Model, params: Params, x, y, loss: str = "mse") -> Params:
    """Backward propagation by hand: the gradient of ``loss`` for every W and b.

    From the output back: ``dA`` from the loss, then per layer ``dZ = dA * f'(Z)``,
    ``dW = A_prev^T · dZ``, ``db = sum(dZ)`` over the batch, ``dA_prev = dZ · W^T``.

    Args:
      model: a model from :func:`jaxnn.mlp`.
      params: its parameters.
      x: a batch ``(batch, features)``.
      y: targets, shaped as ``loss`` requires.
      loss: one of mse, rmse, mae, binary_cross_entropy,
        binary_cross_entropy_with_logits, softmax_cross_entropy.

    Returns:
      Gradients with the structure of ``params`` (equal to ``jax.grad`` of the loss).
    """
    _activations_of(model)
    if model.apply.norm is not None or model.apply.dropout:
        raise ValueError(
            "backprop writes out the plain network only (no norm, no dropout); use jax.grad for this one"
        )
    if loss not in _BACKPROP_LOSSES:
        raise ValueError(f"backprop supports the losses {list(_BACKPROP_LOSSES)}, got {loss!r}")
    x = _on_device(x)
    check_mlp_input(params, x, len(model.apply.activations))
    if x.ndim != 2:
        raise ValueError(f"x must be a batch of shape (batch, features), got {x.shape}")
    return _backprop(model.apply, loss, params, x, _on_device(y))


def _on_device(a) -> jax.Array:
    """``a`` as a jax array: a transfer, not a program (``jnp.asarray`` compiles one)."""
    return a if isinstance(a, jax.Array) else jax.device_put(np.asarray(a))


def _gradients(apply: MLPApply, loss: str, params: Params, x, y) -> Params:
    layers = apply.layers(params, x)
    output = layers[-1][1]
    losses.get_loss(loss)(output, y)  # validates the shapes of y against the output
    dA = _loss_backward(loss, output, y)
    grads = []
    inputs = [x] + [a for _, a in layers[:-1]]
    for (z, a), f, a_prev, p in reversed(
        list(zip(layers, apply.activations, inputs, params, strict=True))
    ):
        dZ = _activation_backward(f, dA, z, a)
        grads.append({"w": a_prev.T @ dZ, "b": dZ.sum(axis=0)})
        dA = dZ @ p["w"].T
    return grads[::-1]


# one program each (served by the program store), not one per operation
_layers = _programs.jit("explain", lambda apply, variables, x: apply.layers(variables, x))
_backprop = _programs.jit("backprop", _gradients, (0, 1))
