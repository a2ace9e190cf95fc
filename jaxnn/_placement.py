"""Placement: which devices a run uses, and where its state and data live.

``fit`` (:func:`for_fit`) splits every batch over the chosen devices: a one-axis mesh
(``"data"``), the params, optimizer state and data replicated on every device, each
step's batch rows constrained to be split over the mesh, so XLA computes each
device's share of the gradient and sums them (an all-reduce). Multi-process runs
(``jaxnn.distributed``) use the same mesh over every process's devices.
``fit_many`` (:func:`for_models`) splits its K models over the devices instead (a
``"models"`` axis) and replicates the data; ``jaxnn.search`` splits its slots the same
way and replicates the trials' table. This module is the only place that
builds meshes and shardings or calls ``device_put``; it does not train.
"""

import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def resolve_devices(devices, name: str = "devices") -> list:
    """``None``: every device (of every process); an int k: the first k; a sequence
    of devices: those. Returns the list."""
    every = jax.devices()
    if devices is None:
        return every
    if isinstance(devices, bool):
        raise TypeError(f"{name} must be None, a count or a sequence of jax devices, not a bool")
    if isinstance(devices, int | np.integer):
        if not 1 <= devices <= len(every):
            raise ValueError(f"{name}={devices}: expected a count in [1, {len(every)}]")
        return every[: int(devices)]
    if (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        if len(set(devices)) != len(devices):
            raise ValueError(f"{name} lists a device more than once, got {list(devices)}")
        return list(devices)
    raise TypeError(f"{name} must be None, a count or a sequence of jax devices, got {devices!r}")


class OneDevice:
    """A run on the default device."""

    batch = None  # no batch sharding

    def step_rows(self, batch_size: int) -> int:
        return 0  # batch_size itself

    def place(self, carry, data, *, in_call: bool = False):
        """``(carry, data)`` on the device. ``in_call``: a run of one compiled call
        gets the host data, which that call transfers itself (a separate transfer
        costs about as much as the whole call on a small problem)."""
        return carry, data if in_call else jax.device_put(data)

    def split(self, tree):
        """``tree`` on the device (its leading axis is the models' or slots')."""
        return jax.device_put(tree)

    replicate = split


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

    def place(self, carry, data, *, in_call: bool = False):
        """``(carry, data)``: the carry replicated, the training rows as :meth:`put_rows`
        and the validation data replicated (``data`` a ``jaxnn._inputs.Data``)."""
        rows, rest = self.put_rows(tuple(data[:3])), self.put(tuple(data[3:]))
        return self.put(carry), type(data)(*rows, *rest)


class ModelParallel:
    """``fit_many``'s K models split over several devices, the data replicated."""

    def __init__(self, devices: list, axis: str):
        self.mesh = Mesh(np.array(devices), (axis,), axis_types=(jax.sharding.AxisType.Auto,))
        self.axis = axis

    def place(self, carry, data):
        return self.split(carry), self.replicate(data)

    def split(self, tree):
        """``tree``'s leading axis (the models', or ``jaxnn.search``'s slots) split over
        the devices (of every process: each process holds the whole ``tree``)."""
        return self._put(tree, NamedSharding(self.mesh, PartitionSpec(self.axis)))

    def replicate(self, tree):
        return self._put(tree, NamedSharding(self.mesh, PartitionSpec()))

    @staticmethod
    def _put(tree, sharding):
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)
        return jax.tree.map(lambda a: _from_whole(sharding, a), tree)


Placement = OneDevice | DataParallel | ModelParallel  # where a run's arrays live


def for_fit(devices) -> OneDevice | DataParallel:
    """The placement of a fit over ``devices`` (see :func:`resolve_devices`)."""
    devs = resolve_devices(devices)
    return DataParallel(devs) if len(devs) > 1 else OneDevice()


def for_models(devices, k: int, axis: str) -> OneDevice | ModelParallel:
    """The placement of ``k`` models over ``devices`` (K must divide evenly)."""
    devs = resolve_devices(devices)
    if len(devs) == 1:
        return OneDevice()
    if k % len(devs):
        raise ValueError(
            f"{k} models do not split evenly over {len(devs)} devices; pass devices= a count that divides {k}"
        )
    return ModelParallel(devs, axis)


def _from_local(sharding, a):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data = _from_local(sharding, jax.random.key_data(a))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    return jax.make_array_from_process_local_data(sharding, np.asarray(a))


def _from_whole(sharding, a):
    """A global array from the whole value, which every process holds."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.device_put(a, sharding)  # already global
    if jax.dtypes.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
        data = _from_whole(sharding, jax.random.key_data(a))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
