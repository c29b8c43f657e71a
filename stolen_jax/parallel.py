"""Data parallelism by sharding: one ``Mesh`` with a ``'data'`` axis over all devices.

Train steps are plain ``jax.jit`` functions; batches are sharded along ``'data'`` and
parameters are replicated, so XLA partitions the step and inserts the collectives. Every
reduction over the batch (BatchNorm statistics, NT-Xent logits, loss means) is therefore
over the *global* batch, which is what makes a sharded step equal the unsharded one.
This is today's form of the ``pmap`` data parallelism of the design card.
"""

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stolen_jax.errors import ConfigError

DATA_AXIS = "data"


def maybe_initialize_distributed(config) -> None:
  """Joins a multi-process job before any device use, when ``config.multihost``.

  With ``coordinator_address``, ``num_processes`` and ``process_id`` (config keys, else the
  environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) the job
  is joined explicitly — any cluster, and N local CPU processes standing in for a pod (gloo
  collectives); without them ``jax.distributed.initialize()`` auto-detects the cluster
  (Cloud TPU pod slices, SLURM, Open MPI).
  """
  multihost = config if isinstance(config, bool) else config.get("multihost", False)
  if not multihost or _initialized["done"]:
    return
  get = (lambda k: None) if isinstance(config, bool) else config.get
  address = get("coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = get("num_processes") or os.environ.get("JAX_NUM_PROCESSES")
  pid = get("process_id")
  pid = pid if pid is not None else os.environ.get("JAX_PROCESS_ID")
  if address:
    if num is None or pid is None:
      raise ConfigError("multihost with coordinator_address also needs num_processes and "
                        "process_id (config keys or JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
      # CPU processes exchange collectives through gloo (TPU/GPU have their own fabric).
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # A peer that dies is noticed within the heartbeat timeout: the survivors stop with an
    # error instead of waiting in a collective forever.
    jax.distributed.initialize(
        coordinator_address=address, num_processes=int(num), process_id=int(pid),
        initialization_timeout=int(os.environ.get("STOLEN_JAX_INIT_TIMEOUT", 300)),
        heartbeat_timeout_seconds=int(os.environ.get("STOLEN_JAX_HEARTBEAT_TIMEOUT", 60)))
  else:
    jax.distributed.initialize()
  _initialized["done"] = True


_initialized = {"done": False}


def is_main() -> bool:
  """Whether this is process 0, the one that writes files, logs and pays for queries."""
  return jax.process_index() == 0


def multiprocess() -> bool:
  return jax.process_count() > 1


def to_host(x) -> np.ndarray:
  """A device array as a host numpy array on every process: directly when this process
  holds all of it (one process, or a replicated result), else gathered across processes."""
  if x.is_fully_addressable or x.is_fully_replicated:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str) -> None:
  """Waits for every process (no-op with one)."""
  if multiprocess():
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def agree(value):
  """Process 0's ``value`` (any JSON-able object, or a numpy array) on every process, so all
  processes take the same decision (e.g. "is this stage finished?") whatever their view of
  the filesystem. Identity with one process."""
  if not multiprocess():
    return value
  import json
  from jax.experimental import multihost_utils
  if isinstance(value, np.ndarray):
    meta = json.dumps({"shape": value.shape, "dtype": str(value.dtype)}) if is_main() else ""
    meta = agree(meta)
    spec = json.loads(meta)
    local = value if is_main() else np.zeros(spec["shape"], spec["dtype"])
    return np.asarray(multihost_utils.broadcast_one_to_all(local))
  data = json.dumps(value).encode() if is_main() else b""
  length = int(multihost_utils.broadcast_one_to_all(np.array(len(data), np.int64)))
  buf = np.zeros(length, np.uint8)
  if is_main():
    buf[:] = np.frombuffer(data, np.uint8)
  buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
  return json.loads(buf.tobytes().decode())


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
