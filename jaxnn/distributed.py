"""Many hosts: one training run over the devices of several processes.

Call :func:`initialize` first in every process (the same program runs everywhere).
Then ``fit`` treats ``x`` and ``y`` as this process's rows of the training data
(all processes hold the same number of rows; the global dataset is process 0's rows,
then process 1's, ...), builds global arrays from them with
``jax.make_array_from_process_local_data``, and trains one model over every device
of every process. ``validation_data`` is given whole to every process.
``fit_many`` and ``jaxnn.search`` split their models (slots) over every device of
every process instead: every process passes the whole data, the same (checked), and
the result is the one process's run with as many devices gives, bit for bit; their
results come back whole to every process. A ``fit`` on one device
(``devices=1``) is the process's own. Only process 0 shows progress and writes
checkpoints and run folders (every process reads a checkpoint it resumes from).
"""

import jax
import numpy as np


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
) -> None:
    """Joins this process to a multi-process run (wraps ``jax.distributed.initialize``).

    On a TPU pod slice or a managed cluster (SLURM, Kubernetes) every argument can be
    left out: JAX finds them. On plain machines give the coordinator's
    ``"host:port"``, the number of processes and this process's id. CPU processes
    talk over gloo.

    Example (two processes on one machine; run each in its own shell):
      ``jaxnn.distributed.initialize("localhost:1234", 2, 0)`` and
      ``jaxnn.distributed.initialize("localhost:1234", 2, 1)``.
    """
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:  # an older or newer jax without this option: its default is used
        pass
    jax.distributed.initialize(
        coordinator_address, num_processes, process_id, local_device_ids=local_device_ids
    )


def is_main_process() -> bool:
    """True in process 0, the one that prints and writes files."""
    return jax.process_index() == 0


def local_rows(n: int) -> slice:
    """The slice of ``n`` global rows that this process feeds (equal shares, in
    process order); ``n`` must divide by the process count."""
    p = jax.process_count()
    if n % p:
        raise ValueError(f"{n} rows do not split evenly over {p} processes")
    share = n // p
    return slice(jax.process_index() * share, (jax.process_index() + 1) * share)


def fetch(tree):
    """Host copies of a pytree of arrays, also of global arrays of a multi-process
    run: a replicated one is read from this process's replica, one split over the
    processes (``fit_many``'s models) is gathered, so every process must call
    ``fetch`` with it (in the same order)."""

    leaves = jax.tree.leaves(tree)
    if jax.process_count() == 1 or all(
        not isinstance(a, jax.Array) or a.is_fully_addressable for a in leaves
    ):
        # no PRNG keys
        numeric = all(not isinstance(a, jax.Array) or isinstance(a.dtype, np.dtype) for a in leaves)
        # a copy each: 1-2 us, against 10-15 us through device_get
        if numeric and jax.default_backend() == "cpu":
            return jax.tree.map(lambda a: np.array(a) if isinstance(a, jax.Array) else a, tree)
        return jax.device_get(tree)  # one batched transfer from an accelerator

    def one(a):
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                one(jax.random.key_data(a)), impl=jax.random.key_impl(a)
            )
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            # split over the processes (fit_many's models): gathered, a collective
            if not a.is_fully_replicated:
                from jax.experimental import multihost_utils

                return np.asarray(multihost_utils.process_allgather(a, tiled=True))
            return np.asarray(a.addressable_data(0))
        return np.asarray(a)

    return jax.tree.map(one, tree)
