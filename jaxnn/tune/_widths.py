"""Width buckets of a ``width`` search (private; used by ``jaxnn.tune._program``).

A trial of width ``w`` masks the hidden units of the model given past ``w``. Computing
every slot at the model's width would waste the FLOPs of the masked units, so the
slots are grouped into buckets, each computed at its own width (its widest option):
a bucket holds the options whose networks cost at least half of its widest one's
(padding never costs more than 2x the FLOPs). Each bucket has its own slots, shared in
proportion to the configurations drawn into it, and its own queue of them.

Each bucket compiles its own epoch: 1.5-2 s more to compile on a 2-core CPU, and a
step of every bucket costs its own loop overheads. So by default (``width_buckets=None``)
a search buckets only when one step of its slots at the largest width is at least
``BUCKET_WORK`` multiply-adds. On that CPU a 27-configuration search of a
256-input network (widths 32-256, batch 128, 26M multiply-adds a step) ran warm in
0.55 s bucketed against 0.62 s, and took 1.6 s more from a cold start; one of a
784-input network (widths 128-1024, 312M a step) ran warm in 3.39 s against 4.53 s.
"""

import itertools
import math

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


def buckets(sizes, widths: np.ndarray, slots: int, devices: int) -> tuple:
    """``((width, slots), ...)``, narrowest first, for the drawn ``widths`` (one per
    configuration): options grouped while the widest costs at most twice the
    narrowest; the slots shared in proportion to each bucket's configurations (largest
    remainders), at least one each, rounded up to a multiple of ``devices``."""
    groups: list[list[int]] = []
    for w in sorted({int(w) for w in widths}):
        if groups and flops(sizes, w) <= 2 * flops(sizes, groups[-1][0]):
            groups[-1].append(w)
        else:
            groups.append([w])
    counts = [int(np.isin(widths, group).sum()) for group in groups]
    quota = [slots * c / len(widths) for c in counts]
    share = [int(q) for q in quota]
    for i in sorted(range(len(quota)), key=lambda i: share[i] - quota[i])[: slots - sum(share)]:
        share[i] += 1  # the largest remainders
    share = [max(1, min(c, s)) for c, s in zip(counts, share, strict=True)]
    return tuple(
        (g[-1], math.ceil(s / devices) * devices) for g, s in zip(groups, share, strict=True)
    )


def queues(buckets: tuple, widths: jax.Array) -> jax.Array:
    """``(B, N)``: each bucket's configurations in id order (a configuration goes to the
    narrowest bucket that holds its width), padded with ``N``."""
    n = widths.shape[0]
    ids = jnp.arange(n, dtype=jnp.int32)
    bounds = [0, *(width for width, _ in buckets)]
    return jnp.stack(
        [
            jnp.sort(jnp.where((widths > lo) & (widths <= hi), ids, n))
            for lo, hi in itertools.pairwise(bounds)
        ]
    )


def narrow(tree, shapes):
    """Each leaf's leading part of ``shapes``' shape (the first units of every axis)."""
    return jax.tree.map(lambda a, s: a[tuple(slice(0, n) for n in s.shape)], tree, shapes)


def widen(tree, template):
    """Each leaf zero-padded at the end of every axis to ``template``'s shape."""
    pad = lambda a, t: (
        jnp.pad(a, [(0, m - n) for n, m in zip(a.shape, t.shape, strict=True)]) if a.ndim else a
    )
    return jax.tree.map(pad, tree, template)
