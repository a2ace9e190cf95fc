"""The data a run trains on (private): checked at the boundary, split into training
and validation parts, targets matched to the loss and the model's output. Nothing
here compiles a training program or writes a file.
"""

import hashlib
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import _programs, rng
from jaxnn._checks import MAX_ELEMENTS, float_dtype, positive_int
from jaxnn.data import summary, validate
from jaxnn.losses import LOSSES, get_loss


class Data(NamedTuple):
    """A run's arrays on the host: training rows, targets and sample weights, and the
    same for validation (``None`` where absent). ``x`` is ``None`` in a streamed fit
    (its rows come from ``Run.stream``)."""

    x: Any
    y: Any
    w: Any = None
    x_val: Any = None
    y_val: Any = None
    w_val: Any = None


def prepare_targets(loss, y: np.ndarray, out_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Checks ``y`` against the model's output and the kind of targets the loss says
    it takes (its ``targets`` attribute: ``"classes"``, ``"binary"``, or none: any
    values); reshapes (n,) to (n, 1) for a one-output model (documented, never a
    broadcast)."""
    fn = get_loss(loss)
    kind, loss_name = getattr(fn, "targets", None), getattr(fn, "__name__", "the loss")
    if kind == "classes":
        k = out_shape[-1] if out_shape else 1
        if y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"{name}: {loss_name} needs integer class labels, got dtype {y.dtype}"
                )
            _, low, high = summary(y)
            if low < 0 or high >= k:
                raise ValueError(
                    f"{name}: labels must lie in [0, {k}) for a model with {k} outputs, got values in [{low}, {high}]"
                )
            return y
        if y.shape[1:] != out_shape:
            raise ValueError(f"{name}: one-hot targets must have shape (n, {k}), got {y.shape}")
        y = y.astype(np.float32)
        sums = y.sum(axis=1)
        if y.min() < 0 or y.max() > 1 or np.abs(sums - 1).max() > 1e-3:
            row = int(
                np.argmax((y < 0).any(axis=1) | (y > 1).any(axis=1) | (np.abs(sums - 1) > 1e-3))
            )
            raise ValueError(
                f"{name}: {loss_name} needs one-hot or probability targets (each row in [0, 1], "
                f"summing to 1), or integer labels (n,); row {row} is {y[row].tolist()}"
            )
        return y
    if y.ndim == 1 and out_shape == (1,):
        y = y[:, None]
    if y.shape[1:] != out_shape:
        raise ValueError(
            f"{name} has shape {y.shape} but the model outputs (n, {', '.join(map(str, out_shape))}); "
            f"expected targets of shape (n, {', '.join(map(str, out_shape))})"
        )
    if kind == "binary":
        _, low, high = summary(y)
        if low < 0 or high > 1:
            raise ValueError(
                f"{name}: {loss_name} needs targets in [0, 1] (0/1 labels), got values in [{low}, {high}]"
            )
    return y.astype(float_dtype())


def loss_name(loss) -> str | None:
    return (
        loss if isinstance(loss, str) else next((k for k, f in LOSSES.items() if f is loss), None)
    )


def check_multiprocess(x, y, validation, *, whole: bool, weights=None) -> None:
    """The rules of a multi-process run. ``fit`` over every process's devices
    (``whole=False``): each process feeds its equal share of the rows, and the
    validation data whole. ``fit_many`` and
    ``jaxnn.search`` (``whole=True``): the models are split over the processes and
    every process feeds the whole data, the same everywhere (checked by a digest of
    x, y, ``weights`` and the validation arrays)."""
    from jax.experimental import multihost_utils

    if whole:
        digest = hashlib.sha256()
        val = validation if isinstance(validation, tuple | list) else ()
        for a in (x, y, *val, *([] if weights is None else [weights])):
            a = np.ascontiguousarray(np.asarray(a))
            digest.update(f"{a.shape}{a.dtype}".encode())
            digest.update(a.view(np.uint8).ravel())  # a view: no copy of the bytes
        mine = np.frombuffer(digest.digest()[:8], np.int64)
        if len(set(np.ravel(multihost_utils.process_allgather(mine)).tolist())) != 1:
            raise ValueError(
                "in a multi-process fit_many or search every process passes the same x, y (and sample_weight, "
                "validation): the models are split over the processes, each of them trains on all the data"
            )
        return
    if validation is not None and not isinstance(validation, tuple | list):
        raise ValueError(
            "in a multi-process run pass validation=(x_val, y_val) (whole, to every process), not a fraction"
        )
    rows = multihost_utils.process_allgather(np.array([x.shape[0]]))
    if len(set(np.ravel(rows).tolist())) != 1:
        raise ValueError(
            f"every process must feed the same number of rows, got {np.ravel(rows).tolist()}"
        )


def check_sample_weight(weights, n: int, name: str) -> np.ndarray:
    """``weights`` as float32 ``(n,)``: finite, >= 0, not all 0."""
    w = np.asarray(weights)
    if w.dtype == bool or not (
        np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be numbers, one per row, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one weight per row), got {w.shape}")
    w = w.astype(np.float32)
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError(f"{name} must be finite and >= 0, and not all 0")
    return w


# Compiled once per row count with LLVM's optimisation off: the same permutation, in
# 0.1 s less than eager jax.random.permutation's compile (0.2 s on a 2-core CPU).
_validation_order = _programs.jit(
    "validation_order",
    lambda key, n: jax.random.permutation(rng.stream(key, "validation"), n),
    1,
    compiler_options={"xla_backend_optimization_level": 0},
)


def check_folds(cv, n: int | None) -> int | list:
    """``cv`` checked: a number of folds (an int), or folds given as two or more
    ``(train, held_out)`` pairs of row indices in ``[0, n)``, each part non-empty,
    without repeats, the two apart."""
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        return positive_int(cv, "cv", MAX_ELEMENTS)
    if isinstance(cv, str | bytes) or not hasattr(cv, "__iter__"):
        raise TypeError(
            f"cv must be a number of folds or a list of (train, held_out) row-index pairs, got {cv!r}"
        )
    folds = []
    for f, fold in enumerate(cv):
        if not isinstance(fold, tuple | list) or len(fold) != 2:
            raise ValueError(
                f"cv's fold {f} must be a (train, held_out) pair of row indices, got {fold!r}"
            )
        parts = []
        for part, rows in zip(("training", "held-out"), fold, strict=True):
            rows = np.asarray(rows)
            if rows.ndim != 1 or not len(rows) or not np.issubdtype(rows.dtype, np.integer):
                raise ValueError(
                    f"cv's fold {f}: its {part} rows must be a non-empty 1-D array of row indices, "
                    f"got {rows.dtype} of shape {rows.shape}"
                )
            if (n is not None and (rows.min() < 0 or rows.max() >= n)) or len(
                np.unique(rows)
            ) != len(rows):
                raise ValueError(
                    f"cv's fold {f}: its {part} rows must be distinct indices in [0, {n}), got "
                    f"{rows.min()}..{rows.max()} ({len(rows) - len(np.unique(rows))} repeated)"
                )
            parts.append(rows.astype(np.int64))
        if np.intersect1d(*parts).size:
            raise ValueError(
                f"cv's fold {f} holds out rows it trains on; its two parts must be apart"
            )
        folds.append(tuple(parts))
    return folds


def fold_count(cv) -> int:
    """The folds of a checked ``cv`` (0: none)."""
    return len(cv) if isinstance(cv, list) else cv or 0


def folds_text(cv) -> str:
    return f"[{len(cv)} given folds]" if isinstance(cv, list) else str(cv)


def fold_data(plan, data: Data, cv, key, drop_remainder: bool):
    """The plan of one fold and the folds' data, stacked on a leading axis: fold ``f``
    holds out the ``f``-th of ``cv`` parts of a permutation of the rows (stream
    ``validation``), or ``cv``'s ``f``-th ``(train, held_out)`` pair of row indices;
    parts of unequal size are padded with rows of weight 0."""
    x, y, w = data.x, data.y, data.w
    n = x.shape[0]
    if isinstance(cv, list):
        folds = cv
    elif cv > n:
        raise ValueError(f"cv={cv} folds of {n} rows: expected at most {n}")
    else:
        parts = np.array_split(np.asarray(_validation_order(key, n)), cv)
        folds = [(np.concatenate(parts[:f] + parts[f + 1 :]), parts[f]) for f in range(cv)]
    # the largest training and validation parts
    m, v = (max(len(f[i]) for f in folds) for i in (0, 1))
    batch_size = positive_int(plan.batch_size, "batch_size", m)
    pad = lambda idx, size: np.concatenate([idx, np.repeat(idx[:1], size - len(idx))])
    mask = lambda idx, size: (np.arange(size) < len(idx)).astype(np.float32)
    padded = any(len(f[0]) != m or len(f[1]) != v for f in folds)
    if w is not None:
        for f, (train, val) in enumerate(folds):
            _check_weighed(w, ((train, f"fold {f}'s training"), (val, f"fold {f}'s held-out")))

    def side(which: int, size: int):
        idx = np.stack([pad(f[which], size) for f in folds])
        weights = None
        if padded or w is not None:
            weights = np.stack([mask(f[which], size) for f in folds]) * (
                1.0 if w is None else np.asarray(w)[idx]
            )
        return x[idx], y[idx], None if weights is None else jnp.asarray(weights, jnp.float32)

    n_batches = m // batch_size if drop_remainder else math.ceil(m / batch_size)
    return plan._replace(n=m, n_batches=n_batches, n_val=v), Data(*side(0, m), *side(1, v))


def split_validation(key, data: Data, validation) -> Data:
    """``data`` with its validation part: ``validation`` is ``None``, ``(x_val, y_val)``,
    ``(x_val, y_val, w_val)``, or the fraction of the rows (and weights) to hold out at
    random (stream ``"validation"`` of the run key)."""
    x, y, w = data.x, data.y, data.w
    if validation is None:
        return data
    if isinstance(validation, tuple | list):
        if len(validation) not in (2, 3):
            raise TypeError(
                "validation must be a pair (x_val, y_val), a triple (x_val, y_val, weights) or a fraction in (0, 1)"
            )
        x_val, y_val = validate(*validation[:2], x_name="validation x", y_name="validation y")
        if x_val.shape[1] != x.shape[1]:
            raise ValueError(f"validation x has {x_val.shape[1]} features, x has {x.shape[1]}")
        w_val = None
        if len(validation) == 3:
            w_val = check_sample_weight(validation[2], x_val.shape[0], "validation weights")
        return Data(x, y, w, x_val, y_val, w_val)
    if isinstance(validation, bool) or not isinstance(validation, float | int | np.floating):
        raise TypeError(
            f"validation must be a pair (x_val, y_val) or a fraction in (0, 1), got {validation!r}"
        )
    if not 0 < validation < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
    n_val = int(round(x.shape[0] * validation))
    if not 0 < n_val < x.shape[0]:
        raise ValueError(f"validation={validation} of {x.shape[0]} rows leaves an empty split")
    perm = np.asarray(_validation_order(key, x.shape[0]))
    val, train = perm[:n_val], perm[n_val:]
    if w is None:
        return Data(x[train], y[train], None, x[val], y[val], None)
    _check_weighed(w, ((train, "training"), (val, f"held-out (validation={validation})")))
    return Data(x[train], y[train], w[train], x[val], y[val], w[val])


def _check_weighed(w, parts) -> None:
    """Raises when a part of the rows (``(indices, name)`` pairs) has total weight 0: its
    loss would be 0, a perfect score for nothing learned."""
    w = np.asarray(w)
    for idx, name in parts:
        if not w[idx].sum() > 0:
            raise ValueError(
                f"the {name} rows have total weight 0 (sample_weight): nothing would be "
                "scored on them; give them weight, or choose another split"
            )
