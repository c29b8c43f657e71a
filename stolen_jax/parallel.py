"""Data parallelism by sharding: one ``Mesh`` with a ``'data'`` axis over all devices.

Train steps are plain ``jax.jit`` functions; batches are sharded along ``'data'`` and
parameters are replicated, so XLA partitions the step and inserts the collectives. Every
reduction over the batch (BatchNorm statistics, NT-Xent logits, loss means) is therefore
over the *global* batch, which is what makes a sharded step equal the unsharded one.
This is today's form of the ``pmap`` data parallelism of the design card.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stolen_jax.errors import ConfigError

DATA_AXIS = "data"


def maybe_initialize_distributed(multihost: bool) -> None:
  """Joins a multi-host job (Cloud TPU pod slice, multi-node GPU) before any device use."""
  if multihost:
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: every device of every host)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``'data'``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """A global batch must split evenly over the devices."""
  if batch_size % mesh.size:
    raise ConfigError(f"{what}={batch_size} is not divisible by the {mesh.size} devices; "
                      f"use a multiple of {mesh.size}")


def put_replicated(array, mesh: Mesh) -> jax.Array:
  """Places a host array on every device of the mesh (works across hosts: each host holds
  the whole array, as it does for the small datasets this project keeps on device)."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, replicated(mesh), lambda idx: array[idx])


def put_sharded(array, mesh: Mesh) -> jax.Array:
  """Places a global host array (same on every host) split along its first axis."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, batch_sharded(mesh), lambda idx: array[idx])


def replicate_tree(tree, mesh: Mesh):
  """Replicates every leaf of a pytree of arrays over the mesh."""
  return jax.device_put(tree, replicated(mesh))
