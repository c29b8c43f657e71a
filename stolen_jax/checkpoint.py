"""Orbax checkpoints: periodic saves and resume for trainers, restore-by-path for evaluation.

Every checkpoint holds the train state (``state``) and a JSON record (``meta``) that names
the encoder (architecture, width, dtype, image size, feature dim) so that ``probe`` and the
query service can rebuild and restore an encoder from a path alone.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from stolen_jax.errors import CheckpointError


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A CheckpointManager for ``directory`` (created if missing); saves when asked."""
  directory = os.path.abspath(directory)
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict, wait: bool = False) -> None:
  """Saves ``state`` and ``meta`` at ``step`` (asynchronously unless ``wait``)."""
  mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                meta=ocp.args.JsonSave(meta)), force=True)
  if wait:
    mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, abstract_state) -> Optional[Any]:
  """The latest saved state, laid out like ``abstract_state`` (shapes, dtypes, shardings),
  or None when the directory has no checkpoint yet."""
  step = mngr.latest_step()
  if step is None:
    return None
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state)))
  return restored["state"]


def _resolve(path: str) -> tuple[str, int]:
  """Accepts a manager directory (latest step), a step directory, or a stage workdir."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise CheckpointError(f"checkpoint path {path!r} does not exist")
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  base = os.path.basename(path.rstrip("/"))
  if base.isdigit() and os.path.isdir(os.path.join(path, "meta")):
    return os.path.dirname(path), int(base)
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit())
  if not steps:
    raise CheckpointError(f"no Orbax checkpoint found under {path!r}")
  return path, steps[-1]


def read(path: str) -> tuple[dict, dict]:
  """Restores ``(state_tree, meta)`` from a path without knowing the state's structure.

  The state comes back as nested dicts of host arrays (``params``, ``batch_stats``, ...).
  """
  directory, step = _resolve(path)
  mngr = ocp.CheckpointManager(directory)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  except Exception as e:
    raise CheckpointError(f"cannot restore checkpoint {directory}/{step}: {e}") from None
  finally:
    mngr.close()
  return restored["state"], dict(restored["meta"])


def restore_encoder(path: str):
  """(encoder module, variables {'params', 'batch_stats'}, meta) from a checkpoint path."""
  from stolen_jax import models
  state, meta = read(path)
  if "arch" not in meta:
    raise CheckpointError(f"checkpoint {path!r} does not describe an encoder (meta: {meta})")
  encoder = models.get(meta["arch"], width=meta.get("width", 1.0), dtype=meta.get("dtype", "float32"),
                       out_dim=meta.get("feature_dim"))
  variables = {"params": state["params"]["encoder"],
               "batch_stats": state.get("batch_stats", {}).get("encoder", {})}
  return encoder, jax.tree_util.tree_map(jax.numpy.asarray, variables), meta
