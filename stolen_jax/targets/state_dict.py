"""Finding an encoder's weights in whatever a published checkpoint holds.

Checkpoints nest their tensors (``{"state_dict": ...}``, ``{"model": ...}``, MoCo's
``module.encoder_q.``, CLIP's ``visual.``) and prefix their names (``module.`` from
DataParallel, ``encoder.``, ``backbone.``). ``find`` tries every dict of arrays in the file
and every prefix its names share, and keeps the reading that matches the architecture's
expected names best, so a user never edits a file; ``check`` names every missing or
mismatched tensor with the shape the architecture expects.
"""

import os
from typing import Mapping, Optional

from stolen_jax.errors import CheckpointError
from stolen_jax.targets import lazy


def read(path: str, max_gb: Optional[float] = None) -> object:
  """The object in a weights file: ``.safetensors``, or a torch checkpoint (either format),
  its tensors ``lazy.LazyArray``s (read when used; at most ``max_gb`` GB declared)."""
  if not os.path.isfile(path):
    raise CheckpointError(f"weights file {path!r} does not exist")
  with open(path, "rb") as f:
    head = f.read(16)
  from stolen_jax.targets import safetensors_reader, torch_reader
  if path.endswith(".safetensors") or (len(head) >= 9 and head[8:9] == b"{"):
    return safetensors_reader.open_lazy(path, max_gb)
  return torch_reader.open_lazy(path, max_gb)


def _dicts_of_arrays(obj, path=()):
  """(where, {name: array}) for every dict in ``obj`` holding arrays, nested ones flattened."""
  if isinstance(obj, Mapping):
    arrays = {str(k): v for k, v in obj.items() if lazy.is_tensor(v)}
    if arrays:
      yield path, arrays
    for k, v in obj.items():
      if isinstance(v, (Mapping, list, tuple)):
        yield from _dicts_of_arrays(v, path + (str(k),))
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      yield from _dicts_of_arrays(v, path + (str(i),))


def _prefixes(names) -> list[str]:
  """'' and every dotted prefix that ends before some name's last component."""
  out = {""}
  for name in names:
    parts = name.split(".")
    for i in range(1, len(parts)):
      out.add(".".join(parts[:i]) + ".")
  return sorted(out, key=len)


def find(obj, expected: Mapping[str, tuple]) -> tuple[dict, str]:
  """({name: array} with the prefix removed, a description of where they were found): the
  dict and prefix of ``obj`` whose names cover most of ``expected``."""
  best, best_hits, where = None, -1, ""
  candidates = list(_dicts_of_arrays(obj))
  if not candidates:
    raise CheckpointError("the weights file holds no tensors")
  for path, arrays in candidates:
    for prefix in _prefixes(arrays):
      stripped = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
      hits = sum(1 for k in expected if k in stripped)
      if hits > best_hits:
        best, best_hits = stripped, hits
        where = ("/".join(path) or "the top level") + (
            f", prefix {prefix!r} removed" if prefix else "")
  return best, where


def check(found: Mapping[str, "lazy.LazyArray"], expected: Mapping[str, tuple], arch: str,
          where: str) -> None:
  """A CheckpointError naming every missing tensor and every shape that differs."""
  missing = [k for k in expected if k not in found]
  wrong = [(k, found[k].shape, expected[k]) for k in expected
           if k in found and tuple(found[k].shape) != tuple(expected[k])]
  if not missing and not wrong:
    return
  lines = [f"{k}: missing (expected shape {tuple(expected[k])})" for k in missing[:8]]
  lines += [f"{k}: shape {tuple(s)}, expected {tuple(e)}" for k, s, e in wrong[:8]]
  more = len(missing) + len(wrong) - len(lines)
  if len(missing) == len(expected) and found:
    # Nothing matched: say what the file does hold, so the right NAME can be chosen.
    lines.insert(0, f"the file's tensors are named like {sorted(found)[:4]}: another "
                    "architecture than NAME in import:NAME:PATH?")
  raise CheckpointError(
      f"the weights (found at {where}) do not fit {arch}: {len(missing)} missing and {len(wrong)} "
      f"mismatched of {len(expected)} tensors; " + "; ".join(lines)
      + (f"; and {more} more" if more > 0 else ""))
