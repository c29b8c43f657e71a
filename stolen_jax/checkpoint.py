"""Orbax checkpoints: periodic saves and resume for trainers, restore-by-path for evaluation.

Every checkpoint holds the train state (``state``) and a JSON record (``meta``) that names
the encoder (architecture, width, dtype, image size, feature dim) so that ``probe`` and the
query service can rebuild and restore an encoder from a path alone.

Damage is met with a recovery or one clear error: a latest checkpoint that cannot be read
falls back to the previous one (saying so), temp directories of an interrupted save are
cleared, a full disk or a checkpoint of another model is a ``CheckpointError``.
"""

import errno
import glob
import hashlib
import os
import shutil
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from stolen_jax.errors import CheckpointError


def _clear_interrupted_saves(directory: str) -> None:
  """Removes temp directories that an interrupted (killed, disk-full) save left behind."""
  if jax.process_index() != 0:  # One process cleans; the others must not race it.
    return
  for tmp in glob.glob(os.path.join(directory, "*.orbax-checkpoint-tmp*")):
    logging.warning("removing the unfinished checkpoint %s (an interrupted save)", tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A CheckpointManager for ``directory`` (created if missing); saves when asked."""
  directory = os.path.abspath(directory)
  try:
    os.makedirs(directory, exist_ok=True)
  except (NotADirectoryError, FileExistsError, PermissionError) as e:
    raise CheckpointError(f"cannot create the checkpoint directory {directory}: {e}") from None
  _clear_interrupted_saves(directory)
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(directory, options=options)


def _is_disk_full(e: Exception) -> bool:
  """Orbax reports a full disk as OSError(ENOSPC) or as ValueError('RESOURCE_EXHAUSTED ...')."""
  text = str(e)
  return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or any(
      s in text for s in ("RESOURCE_EXHAUSTED", "No space left on device"))


def _save_error(mngr, step, e: Exception) -> CheckpointError:
  _clear_interrupted_saves(str(mngr.directory))
  if _is_disk_full(e):
    return CheckpointError(f"disk full while saving the checkpoint of step {step} in "
                           f"{mngr.directory}; free space and rerun (it resumes from the last "
                           "complete checkpoint)")
  return CheckpointError(f"cannot save the checkpoint of step {step} in {mngr.directory}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")


def save(mngr: ocp.CheckpointManager, step: int, state, meta: dict, wait: bool = False) -> None:
  """Saves ``state`` and ``meta`` at ``step`` (asynchronously unless ``wait``). A failed
  save (a full disk, whatever Orbax raises for it) is one ``CheckpointError`` naming the
  step whose save failed, and leaves no unfinished checkpoint behind."""
  # The previous asynchronous save has had a whole interval to finish; waiting for it here
  # costs nothing, and its failure is then reported with its own step, not this one.
  finish(mngr)
  try:
    mngr.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                  meta=ocp.args.JsonSave(meta)), force=True)
    _PENDING[id(mngr)] = int(step)
    if wait:
      finish(mngr)
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001  (mapped to one clear error; nothing is lost)
    raise _save_error(mngr, step, e) from None


# id(manager) -> the step of its save in flight (the step a background failure belongs to).
_PENDING: dict = {}


def finish(mngr: ocp.CheckpointManager) -> None:
  """Waits for pending asynchronous saves, mapping their failure as ``save`` does."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # noqa: BLE001
    step = _PENDING.pop(id(mngr), None)
    raise _save_error(mngr, step if step is not None else "(the last one)", e) from None
  _PENDING.pop(id(mngr), None)


def step_unreadable(path: str, step: int) -> Optional[str]:
  """Why the checkpoint of ``step`` under ``path`` cannot be restored (missing, damaged),
  or None when it restores: a finished stage is only finished while its final checkpoint
  is intact."""
  try:
    directory, steps = _resolve(path)
  except CheckpointError as e:
    return str(e)
  if step not in steps:
    return f"its final checkpoint (step {step}) is missing from {directory}"
  mngr = ocp.CheckpointManager(directory)
  try:
    mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                               meta=ocp.args.JsonRestore()))
  except Exception as e:  # noqa: BLE001
    return (f"its final checkpoint (step {step}) in {directory} cannot be read "
            f"({type(e).__name__})")
  finally:
    mngr.close()
  return None


def restore_latest(mngr: ocp.CheckpointManager, abstract_state) -> Optional[Any]:
  """The newest readable saved state, laid out like ``abstract_state`` (shapes, dtypes,
  shardings), or None when the directory has no checkpoint yet.

  A damaged newest checkpoint falls back to the previous one, with a warning. A checkpoint
  whose structure differs from ``abstract_state`` (another architecture) is an error.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  errors = []
  for step in steps:
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
    except (ValueError, KeyError, TypeError) as e:
      if _is_structure_mismatch(e):
        raise CheckpointError(
            f"the checkpoint of step {step} in {mngr.directory} holds another model than "
            f"this run builds ({str(e).splitlines()[0][:200]}); use another workdir") from None
      errors.append((step, e))
    except Exception as e:  # Damaged files: fall back to an older checkpoint.
      errors.append((step, e))
    else:
      if errors:
        logging.warning("checkpoint(s) %s in %s could not be read (%s); resumed from the "
                        "previous good checkpoint, step %d", [s for s, _ in errors],
                        mngr.directory, type(errors[0][1]).__name__, step)
        _set_aside(mngr, [s for s, _ in errors])
      return restored["state"]
  if errors:
    logging.warning("no readable checkpoint in %s (%s); starting from scratch",
                    mngr.directory, "; ".join(f"step {s}: {type(e).__name__}" for s, e in errors))
    _set_aside(mngr, [s for s, _ in errors])
  return None


def _set_aside(mngr: ocp.CheckpointManager, steps) -> None:
  """Moves unreadable step directories to ``damaged-<step>`` (kept for inspection): the
  resumed run saves those steps again."""
  for step in steps if jax.process_index() == 0 else ():
    src = os.path.join(str(mngr.directory), str(step))
    dst = os.path.join(str(mngr.directory), f"damaged-{step}")
    shutil.rmtree(dst, ignore_errors=True)
    if os.path.exists(src):
      os.replace(src, dst)
  mngr.reload()


def _is_structure_mismatch(e: Exception) -> bool:
  text = str(e).lower()
  return any(s in text for s in ("tree structure", "structure", "shape", "mismatch", "missing"))


def find_stage_dirs(root: str) -> list[str]:
  """Keyed stage directories directly under ``root`` (those with a ``stage.json``)."""
  if not os.path.isdir(root):
    return []
  return [os.path.join(root, d) for d in sorted(os.listdir(root))
          if os.path.isfile(os.path.join(root, d, "stage.json"))]


def _flat(record, prefix="") -> dict:
  if not isinstance(record, dict):
    return {prefix: record}
  out = {}
  for k, v in record.items():
    out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def _what_differs(dirs: list) -> str:
  """'KEY1 (steal.target=a, ...); KEY2 (steal.target=b, ...)': each stage directory with
  the settings that tell it from the others (from each stage.json)."""
  from stolen_jax import stages
  records = {}
  for d in dirs:
    rec = stages.read_json(os.path.join(d, "stage.json"))
    rec = rec if isinstance(rec, dict) else {}
    records[d] = _flat({"settings": rec.get("settings", {}), "upstream": rec.get("upstream", {})})
  keys = sorted({k for r in records.values() for k in r})
  differ = [k for k in keys if len({repr(r.get(k)) for r in records.values()}) > 1]
  def short(k):
    return k.split(".", 1)[1] if k.startswith("settings.") else k
  return "; ".join(
      f"{os.path.basename(d)} ({', '.join(f'{short(k)}={str(r.get(k))[:60]}' for k in differ[:4])}"
      f"{', ...' if len(differ) > 4 else ''})" for d, r in records.items())


def _resolve(path: str) -> tuple[str, list[int]]:
  """A manager directory (its steps, newest first), from a manager directory, a step
  directory, a stage directory, or a stage root holding one keyed stage."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise CheckpointError(f"checkpoint path {path!r} does not exist")
  if not os.path.isdir(path):
    raise CheckpointError(f"checkpoint path {path!r} is a file, not a checkpoint directory")
  keyed = find_stage_dirs(path)
  if keyed and not os.path.isdir(os.path.join(path, "checkpoints")):
    with_ckpt = [d for d in keyed if os.path.isdir(os.path.join(d, "checkpoints"))]
    if len(with_ckpt) == 1:
      path = with_ckpt[0]
    elif len(with_ckpt) > 1:
      raise CheckpointError(
          f"{path!r} holds {len(with_ckpt)} stages with other settings: "
          f"{_what_differs(with_ckpt)}; name one, e.g. {with_ckpt[-1]}")
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  base = os.path.basename(path.rstrip("/"))
  if base.isdigit() and os.path.isdir(os.path.join(path, "meta")):
    return os.path.dirname(path), [int(base)]
  steps = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True)
  if not steps:
    raise CheckpointError(f"no Orbax checkpoint found under {path!r}")
  return path, steps


def read(path: str) -> tuple[dict, dict]:
  """Restores ``(state_tree, meta)`` from a path without knowing the state's structure.

  The state comes back as nested dicts of host arrays (``params``, ``batch_stats``, ...).
  A damaged newest checkpoint falls back to the previous one, with a warning.
  """
  directory, steps = _resolve(path)
  mngr = ocp.CheckpointManager(directory)
  errors = []
  try:
    for step in steps:
      try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
      except Exception as e:
        errors.append(f"step {step}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        continue
      if errors:
        logging.warning("checkpoint %s: newer step(s) unreadable (%s); using step %d",
                        directory, "; ".join(errors), step)
      return restored["state"], dict(restored["meta"])
  finally:
    mngr.close()
  raise CheckpointError(f"cannot restore any checkpoint in {directory}: {'; '.join(errors)}")


def fingerprint_tree(tree) -> str:
  """A content hash of a pytree of arrays (leaf paths, dtypes, shapes and bytes): the
  identity of an encoder's weights, whatever path they were read from."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def restore_encoder(path: str):
  """(encoder module, variables {'params', 'batch_stats'}, meta) from a checkpoint path.

  ``meta['fingerprint']`` is the content hash of the encoder's variables.
  """
  from stolen_jax import models
  state, meta = read(path)
  if "arch" not in meta:
    raise CheckpointError(f"checkpoint {path!r} does not describe an encoder (meta: {meta})")
  encoder = models.get(meta["arch"], width=meta.get("width", 1.0), dtype=meta.get("dtype", "float32"),
                       out_dim=meta.get("feature_dim"))
  variables = {"params": state["params"]["encoder"],
               "batch_stats": state.get("batch_stats", {}).get("encoder", {})}
  meta["fingerprint"] = fingerprint_tree(variables)
  return encoder, jax.tree_util.tree_map(jax.numpy.asarray, variables), meta
