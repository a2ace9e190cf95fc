"""One value for what a training run is asked to do: :class:`Settings`.

``fit``, ``fit_many``, ``lower``, ``check_fit`` and ``search`` share about twenty
keywords. Each of them builds one ``Settings`` from its keywords and passes that value
on, so the keywords are spelled once, defaulted once (here: ``fit``'s signature
repeats these defaults, and a test keeps the two equal) and checked once. What needs
no data is checked when the value is made; what needs the data (a batch size against
the rows, a validation split, a checkpoint to resume) is checked by ``fit``'s setup,
still before anything compiles. This module does not train.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxnn import _models, _optim
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.losses import get_loss
from jaxnn.metrics import get_metric
from jaxnn.options import Checkpoints, EarlyStopping, Tuning


def _option(value, kind: type, name: str):
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name} must be a jaxnn.{kind.__name__}(...) or None, got {value!r}")
    return value


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Settings:
    """The keywords of :func:`jaxnn.fit` as one checked value (see ``fit`` for each).

    Making it checks every keyword that needs no data: the key, the loss and metric
    names, the optimizer and its hyperparameters, ``epochs`` and ``batch_size`` as
    ints, ``shuffle`` and ``progress`` as bools, and the option values'
    types. ``tuning=None`` becomes ``Tuning()``.

    Example:
      >>> import jax, jaxnn
      >>> s = jaxnn.Settings(loss="mse", key=jax.random.key(0), epochs=3)
      >>> s.batch_size, s.tuning.unroll
      (32, None)
      >>> jaxnn.Settings(loss="mse", key=jax.random.key(0), shuffle="no")
      Traceback (most recent call last):
      ...
      TypeError: shuffle must be True or False, got 'no'
    """

    loss: Any
    key: jax.Array
    optimizer: Any = "sgd"
    batch_size: int = 32
    epochs: int = 1
    shuffle: bool = True
    validation: Any = None
    metrics: Sequence = ()
    early_stopping: EarlyStopping | None = None
    sample_weight: Any = None
    checkpoints: Checkpoints | None = None
    resume: Any = None
    log_dir: Any = None
    devices: Any = None
    progress: bool = True
    tuning: Tuning | None = None

    def __post_init__(self):
        put = lambda name, value: object.__setattr__(self, name, value)
        put("key", _models.check_key(self.key))
        get_loss(self.loss)
        _optim.get_optimizer(self.optimizer)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int | np.integer):
            # its range needs the rows
            raise TypeError(f"batch_size must be an int, got {self.batch_size!r}")
        put("epochs", positive_int(self.epochs, "epochs", MAX_EPOCHS))
        put("shuffle", _flag(self.shuffle, "shuffle"))
        put("progress", _flag(self.progress, "progress"))
        if isinstance(self.metrics, str) or not isinstance(self.metrics, Sequence):
            raise TypeError(f"metrics must be a list of names or callables, got {self.metrics!r}")
        put("metrics", tuple(self.metrics))
        for m in self.metrics:
            get_metric(m)
        _option(self.early_stopping, EarlyStopping, "early_stopping")
        _option(self.checkpoints, Checkpoints, "checkpoints")
        put("tuning", _option(self.tuning, Tuning, "tuning") or Tuning())
