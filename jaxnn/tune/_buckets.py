"""A search's buckets of slots (private; used by ``jaxnn.tune._program``).

A bucket is a group of slots that share one compiled epoch: its trials' batch size
(``batch_size`` in the space: a batch size is a shape, so each one drawn has its own
bucket) and the width it computes at.

A trial of width ``w`` masks the hidden units of the model given past ``w``. Computing
every slot at the model's width would waste the FLOPs of the masked units, so the
slots may be grouped into width buckets, each computed at its own width (its widest option):
a bucket holds the options whose networks cost at least half of its widest one's
(padding never costs more than 2x the FLOPs). Each bucket has its own slots, shared in
proportion to the configurations drawn into it, and its own queue of them.

Each bucket compiles its own epoch: 1.5-2 s more to compile on a 2-core CPU, and a
step of every bucket costs its own loop overheads. So by default (``width_buckets=None``)
a search buckets widths only when one step of its slots at the largest width is at least
``BUCKET_WORK`` multiply-adds. On that CPU a 27-configuration search of a
256-input network (widths 32-256, batch 128, 26M multiply-adds a step) ran warm in
0.55 s bucketed against 0.62 s, and took 1.6 s more from a cold start; one of a
784-input network (widths 128-1024, 312M a step) ran warm in 3.39 s against 4.53 s.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# A step's multiply-adds from which a search buckets, keyed by "on a CPU". The
# accelerators' number is a guess from their launch overheads, not measured.
BUCKET_WORK = {True: 2**24, False: 2**30}


def hidden(sizes, width: int) -> tuple:
    """The mlp ``sizes`` with every hidden layer ``width`` wide."""
    return (sizes[0], *[width] * (len(sizes) - 2), sizes[-1])


def flops(sizes, width: int | None = None) -> int:
    """Multiply-adds of one row through the mlp ``sizes`` (every hidden layer ``width`` wide, if given)."""
    s = sizes if width is None else hidden(sizes, width)
    return sum(a * b for a, b in zip(s[:-1], s[1:], strict=False))


class Bucket(NamedTuple):
    """A group of slots with one compiled epoch."""

    width: int | None  # the hidden units its slots compute (None: the model's)
    batch: int | None  # its trials' batch size (None: the search's batch_size)
    slots: int
    n_batches: int = 0  # with batch: the batches of an epoch
    unroll: int = 0  # with batch: the steps an iteration of its epoch's loop runs


def buckets(sizes, widths, batches, slots: int, devices: int) -> tuple:
    """The :class:`Bucket` s, by batch size then narrowest first, for the drawn
    ``widths`` and ``batches`` (one per configuration; ``None``: not grouped by it):
    per batch size, widths grouped while the widest costs at most twice the narrowest;
    the slots shared in proportion to each bucket's configurations (largest
    remainders), at least one each, rounded up to a multiple of ``devices``."""
    n = len(widths if widths is not None else batches)
    groups: list[tuple] = []  # (width or None, batch or None, its configurations)
    for batch in [None] if batches is None else sorted({int(b) for b in batches}):
        mine = np.ones(n, bool) if batch is None else np.asarray(batches) == batch
        if widths is None:
            groups.append((None, batch, mine))
            continue
        bounds: list[list[int]] = []
        for w in sorted({int(w) for w in widths[mine]}):
            if bounds and flops(sizes, w) <= 2 * flops(sizes, bounds[-1][0]):
                bounds[-1].append(w)
            else:
                bounds.append([w])
        groups += [(group[-1], batch, mine & np.isin(widths, group)) for group in bounds]
    counts = [int(mine.sum()) for *_, mine in groups]
    quota = [slots * c / n for c in counts]
    share = [int(q) for q in quota]
    for i in sorted(range(len(quota)), key=lambda i: share[i] - quota[i])[: slots - sum(share)]:
        share[i] += 1  # the largest remainders
    share = [max(1, min(c, s)) for c, s in zip(counts, share, strict=True)]
    return tuple(
        Bucket(width, batch, math.ceil(s / devices) * devices)
        for (width, batch, _), s in zip(groups, share, strict=True)
    )


def queues(buckets: tuple, widths, batches, n: int) -> jax.Array:
    """``(B, N)``: each bucket's configurations in id order (a configuration goes to the
    bucket of its batch size, the narrowest that holds its width), padded with ``N``."""
    ids = jnp.arange(n, dtype=jnp.int32)
    rows = []
    for i, b in enumerate(buckets):
        mine = jnp.ones(n, bool)
        if b.batch is not None:
            mine &= batches == b.batch
        if b.width is not None:
            below = max((o.width for o in buckets[:i] if o.batch == b.batch), default=0)
            mine &= (widths > below) & (widths <= b.width)
        rows.append(jnp.sort(jnp.where(mine, ids, n)))
    return jnp.stack(rows)


def narrow(tree, shapes):
    """Each leaf's leading part of ``shapes``' shape (the first units of every axis)."""
    return jax.tree.map(lambda a, s: a[tuple(slice(0, n) for n in s.shape)], tree, shapes)


def widen(tree, template):
    """Each leaf zero-padded at the end of every axis to ``template``'s shape."""
    pad = lambda a, t: (
        jnp.pad(a, [(0, m - n) for n, m in zip(a.shape, t.shape, strict=True)]) if a.ndim else a
    )
    return jax.tree.map(pad, tree, template)
