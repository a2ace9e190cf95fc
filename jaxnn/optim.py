"""Optimizers as values: ``jaxnn.optim.sgd(0.1)``, ``adam(1e-3)``, ...

Each function checks its hyperparameters now and returns an :class:`Optimizer` (a
name and its hyperparameters) that ``fit``, ``fit_many``, ``jaxnn.search`` and the
scikit-learn estimators accept. The hyperparameters live in the optimizer's *state*,
not in the compiled program: a new learning rate (or momentum, or betas) reuses the
same compiled training loop, and ``fit_many`` trains models with different values at
once. ``l2`` adds ``l2 * w`` to the gradient of every weight matrix (not the biases),
scikit-learn's ``alpha`` penalty.

Any ``optax.GradientTransformation`` (schedules, your own chain) can be passed instead
of a name; it carries its own hyperparameters.
"""

from jaxnn._optim import DEFAULT_LEARNING_RATE, check_hyperparam
from jaxnn._optim import OPTIMIZERS as OPTIMIZERS
from jaxnn._optim import Optimizer as Optimizer


def _value(name: str, **given) -> Optimizer:
    """The :class:`Optimizer` ``name`` with the hyperparameters given (``None``: the
    default), each checked now: a number, or a 1-D sequence (one per model)."""
    values = {}
    for n, v in given.items():
        if v is not None:
            values[n] = v if n == "learning_rate" and callable(v) else check_hyperparam(name, n, v)
    return Optimizer(name, values)


def sgd(learning_rate=DEFAULT_LEARNING_RATE, *, l2=None) -> Optimizer:
    """Plain stochastic gradient descent, the seed's: ``w -= learning_rate * grad``.

    Every hyperparameter is a number > 0 (``l2`` >= 0), an optax schedule (the
    learning rate, in ``fit``), or a 1-D sequence with one value per model
    (``fit_many``: one compiled program trains them all). ``l2`` adds ``l2 * w`` to
    the gradient of every weight matrix (not the biases): scikit-learn's ``alpha``.

    Example:
      >>> sgd(0.1)
      Optimizer(name='sgd', hyperparams={'learning_rate': 0.1})
    """
    return _value("sgd", learning_rate=learning_rate, l2=l2)


def momentum(learning_rate=DEFAULT_LEARNING_RATE, momentum=None, *, l2=None) -> Optimizer:
    """SGD with heavy-ball momentum (``momentum`` in [0, 1], default 0.9); see :func:`sgd`."""
    return _value("momentum", learning_rate=learning_rate, momentum=momentum, l2=l2)


def nesterov(learning_rate=DEFAULT_LEARNING_RATE, momentum=None, *, l2=None) -> Optimizer:
    """SGD with Nesterov momentum (``momentum`` in [0, 1], default 0.9); see :func:`sgd`."""
    return _value("nesterov", learning_rate=learning_rate, momentum=momentum, l2=l2)


def adam(learning_rate=DEFAULT_LEARNING_RATE, *, b1=None, b2=None, eps=None, l2=None) -> Optimizer:
    """Adam (optax's; ``b1``, ``b2`` in [0, 1), defaults 0.9, 0.999; ``eps`` 1e-8); see :func:`sgd`."""
    return _value("adam", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, l2=l2)


def adamw(
    learning_rate=DEFAULT_LEARNING_RATE, *, b1=None, b2=None, eps=None, weight_decay=None, l2=None
) -> Optimizer:
    """AdamW: Adam with decoupled weight decay (``weight_decay``, default 1e-4); see :func:`adam`."""
    return _value(
        "adamw",
        learning_rate=learning_rate,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        l2=l2,
    )
