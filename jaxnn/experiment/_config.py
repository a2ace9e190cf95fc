"""An experiment's config (private): ``ExperimentConfig``, checked when it is made, and
the data split it defines."""

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import numpy as np

from jaxnn import _optim, data, metrics, optim, rng
from jaxnn import space as spaces
from jaxnn._checks import MAX_EPOCHS, positive_int
from jaxnn.losses import get_loss
from jaxnn.mlp import NORMS
from jaxnn.tune import schedulers

Task = Literal["regression", "binary", "multiclass"]


MAX_SEED = 2**63 - 1  # jax.random.key takes an int64


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run. Saved as ``config.json``; ``--from-run`` reads it back."""

    name: str
    dataset: str  # "seed" (the seed's 1000 x 3 regression) or a bundled dataset name
    task: Task
    loss: str
    output_activation: str | None = None
    hidden: tuple[int, ...] = (4, 4)
    activation: str = "relu"
    metrics: tuple[str, ...] = ()
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch_size: int = 1
    epochs: int = 50
    seed: int = 0
    test_fraction: float = 0.2
    # of the training split, held out to choose on (early stopping, the best checkpoint,
    # --search's ranking); the test split is scored once, at the end
    validation_fraction: float = 0.2
    standardize: bool = True  # features (and a bundled regression target) by training statistics
    checkpoint_every: int = 0  # 0: a checkpoint at the end only
    dropout: float = 0.0  # after each hidden layer, in training
    norm: str | None = None  # "batch" or "layer" normalisation in each hidden layer
    # --search N: what is searched ({name: [kind, *arguments]}) and how (the schedule's fields, its kind)
    search_space: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPACE))
    search_schedule: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_SCHEDULE))

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), _KINDS[field.name]
            if not isinstance(value, kind) or (
                isinstance(value, bool) and kind not in (bool, object)
            ):
                raise TypeError(
                    f"config field {field.name} must be {_KIND_NAMES[kind]}, got {value!r:.80}"
                )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", self.name):
            raise ValueError(
                f"name must be a plain name (letters, digits, . _ -; no path), got {self.name!r:.80}"
            )
        if self.dataset != "seed" and self.dataset not in data.DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; expected 'seed' or one of {list(data.DATASETS)}"
            )
        if self.task not in ("regression", "binary", "multiclass"):
            raise ValueError(f"task must be regression, binary or multiclass, got {self.task!r}")
        get_loss(self.loss)
        for m in self.metrics:
            metrics.get_metric(m)
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; expected one of {list(optim.OPTIMIZERS)}"
            )
        _optim.check_learning_rate(self.learning_rate)
        if not self.hidden:
            raise ValueError(f"hidden must be one or more sizes >= 1, got {self.hidden}")
        for h in self.hidden:
            positive_int(h, "each hidden size")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.epochs, "epochs", MAX_EPOCHS)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in (None, *NORMS):
            raise ValueError(f"norm must be null or one of {list(NORMS)}, got {self.norm!r}")
        search_settings(self)

    def to_json(self) -> str:
        """``config.json``'s text; the search fields only where they differ from their
        defaults (a run that never searched reads as one)."""
        fields = dataclasses.asdict(self)
        for name, default in (
            ("search_space", DEFAULT_SPACE),
            ("search_schedule", DEFAULT_SCHEDULE),
        ):
            if fields[name] == default:
                del fields[name]
        return json.dumps(fields, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        try:
            raw = json.loads(text)
        except RecursionError:
            raise ValueError("config.json is nested too deeply to be a config") from None
        if not isinstance(raw, dict):
            raise ValueError(
                f"config.json must hold one object of fields, got {type(raw).__name__}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"config.json has unknown fields {sorted(unknown)}")
        for f in ("hidden", "metrics"):
            if isinstance(raw.get(f), list):
                raw[f] = tuple(raw[f])
        return cls(**raw)


DEFAULT_SPACE = {"learning_rate": ["loguniform", 0.001, 1.0]}
DEFAULT_SCHEDULE = {"kind": "halving", "min_epochs": 1, "eta": 3}
# the config fields a script's search may vary
SEARCHED = ("learning_rate", "width", "dropout", "batch_size")
_SPACES = {
    "loguniform": (spaces.loguniform, 2),
    "uniform": (spaces.uniform, 2),
    "choice": (spaces.choice, 1),
}
_SCHEDULES = {
    "halving": schedulers.SuccessiveHalving,
    "hyperband": schedulers.Hyperband,
    "pbt": schedulers.PBT,
}


def search_settings(config: "ExperimentConfig") -> tuple[dict, object]:
    """``(space, schedule)`` of the config's ``search_space`` and ``search_schedule``
    (``max_epochs`` is the config's ``epochs``); raises for a bad entry."""
    space = {}
    for name, entry in config.search_space.items():
        if name not in SEARCHED:
            raise ValueError(
                f"search_space: {name!r} is not searched by the scripts; expected one of {list(SEARCHED)}"
            )
        kinds = list(_SPACES)
        if not isinstance(entry, list | tuple) or not entry or entry[0] not in _SPACES:
            raise ValueError(
                f"search_space[{name!r}] must be [kind, ...] with kind one of {kinds}, got {entry!r:.80}"
            )
        if name in ("width", "batch_size") and (
            entry[0] != "choice"
            or len(entry) != 2
            or not isinstance(entry[1], list | tuple)
            or not all(type(w) is int and w >= 1 for w in entry[1])
        ):
            raise ValueError(
                f"search_space[{name!r}] must be ['choice', [sizes]] of whole numbers >= 1, got {entry!r:.80}"
            )
        make, n_args = _SPACES[entry[0]]
        if len(entry) != 1 + n_args:
            raise ValueError(
                f"search_space[{name!r}]: {entry[0]} takes {n_args} argument(s), got {entry!r:.80}"
            )
        space[name] = make(*entry[1:])
    if not space:
        raise ValueError("search_space must name at least one of " + ", ".join(SEARCHED))
    fields = dict(config.search_schedule)
    kind = fields.pop("kind", None)
    if kind not in _SCHEDULES:
        raise ValueError(
            f"search_schedule's kind must be one of {list(_SCHEDULES)}, got {kind!r:.80}"
        )
    try:
        schedule = _SCHEDULES[kind](**{**fields, "max_epochs": config.epochs})
    except TypeError as e:
        raise ValueError(f"search_schedule: {e}") from None
    return space, schedule


_KINDS = {
    **dict.fromkeys(("name", "dataset", "task", "loss", "activation", "optimizer"), str),
    **dict.fromkeys(("output_activation", "norm"), str | None),
    "hidden": tuple,
    "metrics": tuple,
    **dict.fromkeys(("batch_size", "epochs", "seed", "checkpoint_every"), int),
    **dict.fromkeys(
        ("learning_rate", "test_fraction", "validation_fraction", "dropout"), int | float
    ),
    "standardize": bool,
    **dict.fromkeys(("search_space", "search_schedule"), dict),
}
_KIND_NAMES = {
    str: "a string",
    str | None: "a string or null",
    tuple: "a list",
    int: "an int",
    int | float: "a number",
    bool: "true or false",
    dict: "an object",
}

# On --resume (and fit's resume=), the run's identity stays; its schedule is the call's.
KEPT_ON_RESUME = (
    "name",
    "dataset",
    "task",
    "loss",
    "output_activation",
    "hidden",
    "activation",
    "metrics",
    "optimizer",
    "seed",
    "test_fraction",
    "validation_fraction",
    "standardize",
    "dropout",
    "norm",
)
TAKEN_ON_RESUME = ("epochs", "learning_rate", "batch_size", "checkpoint_every")


class Split(NamedTuple):
    """The config's rows: ``train`` to fit on, ``val`` to choose on, ``test`` to score
    once; ``rows`` maps each part to its row indices in the dataset."""

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    rows: dict[str, np.ndarray]


def load_split(config: ExperimentConfig) -> Split:
    """The config's data, split three ways with its seed (test, then validation from the
    rest), and standardised on the training part."""
    root = jax.random.key(config.seed)
    if config.dataset == "seed":
        x, y = data.make_regression(rng.stream(root, "dataset"))
        classes = []
    else:
        ds = data.load_dataset(config.dataset)
        x, y, classes = ds.x, ds.y, ds.target_names
        if config.task == "binary":
            # a sigmoid output and binary cross-entropy want (n, 1)
            y = y[:, None].astype(np.float32)
    x, y = data.validate(x, y)  # as train_test_split takes them
    rest, test = data.split_rows(rng.stream(root, "test_split"), len(x), config.test_fraction)
    fit, val = data.split_rows(
        rng.stream(root, "validation"), len(rest), config.validation_fraction
    )
    rows = {"train": rest[fit], "val": rest[val], "test": test}
    (xtr, xva, xte), (ytr, yva, yte) = ([a[r] for r in rows.values()] for a in (x, y))
    if config.standardize:
        xtr, xva, xte = data.standardize(xtr, xva, xte)
        # the seed's target is in (0, 1) already
        if config.task == "regression" and config.dataset != "seed":
            # so errors read in standard deviations of the target
            ytr, yva, yte = data.standardize(ytr, yva, yte)
    return Split(xtr, xva, xte, ytr, yva, yte, classes, rows)
