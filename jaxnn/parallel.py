"""Data parallelism: which devices a fit uses, and how a batch is split over them.

``fit`` builds a one-axis mesh (``"data"``) over the chosen devices, replicates the
params, optimizer state and data on every device, and constrains each step's batch
rows to be split over the mesh, so XLA computes each device's share of the gradient
and sums them (an all-reduce). Multi-process runs (``jaxnn.distributed``) use the
same mesh over every process's devices. This module does not train.
"""

import math
import warnings
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def resolve_devices(devices) -> list:
    """``None``: every device (of every process); an int k: the first k; a sequence
    of devices: those. Returns the list."""
    every = jax.devices()
    if devices is None:
        return every
    if isinstance(devices, bool):
        raise TypeError("devices must be None, a count or a sequence of jax devices, not a bool")
    if isinstance(devices, int | np.integer):
        if not 1 <= devices <= len(every):
            raise ValueError(f"devices={devices}: expected a count in [1, {len(every)}]")
        return every[: int(devices)]
    if isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
        return list(devices)
    raise TypeError(f"devices must be None, a count or a sequence of jax devices, got {devices!r}")


class DataParallel:
    """The mesh for a fit over ``devices`` (more than one)."""

    def __init__(self, devices: list):
        self.mesh = Mesh(np.array(devices), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        self.size = len(devices)
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    def step_rows(self, batch_size: int) -> int:
        """``batch_size`` rounded up to a multiple of the devices, with a warning when
        padding is needed (the pad rows are masked out of the loss)."""
        rows = math.ceil(batch_size / self.size) * self.size
        if rows != batch_size:
            warnings.warn(
                f"batch_size={batch_size} is not a multiple of the {self.size} devices: every batch is padded "
                f"to {rows} rows, and the padding is masked out of the loss",
                stacklevel=4,
            )
        return rows

    def put(self, tree):
        """Places a pytree (host or device arrays) replicated on every device."""
        if jax.process_count() == 1:
            return jax.device_put(tree, self.replicated)
        return jax.tree.map(lambda a: _from_local(self.replicated, a), tree)

    def put_rows(self, tree):
        """Places training arrays: replicated within one process; over several
        processes, each process's rows become its share of row-sharded global arrays."""
        if jax.process_count() == 1:
            return self.put(tree)
        return jax.tree.map(lambda a: _from_local(self.batch, a), tree)


def _from_local(sharding, a):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = _from_local(sharding, jax.random.key_data(a))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    return jax.make_array_from_process_local_data(sharding, np.asarray(a))
