"""safetensors files read as numpy (the format is a length, a JSON header, raw bytes)."""

import json
import os
import struct
from typing import Optional

import numpy as np

from stolen_jax.errors import CheckpointError
from stolen_jax.targets import lazy

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}


def open_lazy(path: str, max_gb: Optional[float] = None) -> dict:
  """{name: lazy.LazyArray} of a ``.safetensors`` file, checked as the format's own reader
  checks it: each tensor's bytes are exactly its shape's, the tensors tile the data without
  overlap or gap in the order of their offsets, and the declared total is within ``max_gb``.
  Only the tensors that are used are ever read (bfloat16 widened to float32)."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(8)
      if len(head) < 8:
        raise CheckpointError(f"{path} is too short to be a safetensors file")
      (length,) = struct.unpack("<Q", head)
      if length > size - 8 or length > 100 << 20:
        raise CheckpointError(f"{path} is not a safetensors file (header of {length} bytes)")
      text = f.read(length)
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  try:
    header = json.loads(text)
    if not isinstance(header, dict):
      raise ValueError("not an object")
  except ValueError:
    raise CheckpointError(f"{path} has an unreadable safetensors header") from None
  body_start, body_len = 8 + length, size - 8 - length
  records = []
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype, shape = _DTYPES[entry["dtype"]], entry["shape"]
      start, end = (int(v) for v in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
      raise CheckpointError(f"{path}: tensor {name!r} has an unknown dtype or a bad record "
                            f"({str(entry)[:100]})") from None
    n = lazy.element_count(path, f"tensor {name!r}", shape)
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if not 0 <= start <= end:
      raise CheckpointError(f"{path}: tensor {name!r} has invalid data offsets {[start, end]}")
    if end - start != n * itemsize:
      raise CheckpointError(f"{path}: tensor {name!r} holds {end - start} bytes for shape "
                            f"{tuple(shape)} of {entry['dtype']} ({n * itemsize} bytes)")
    records.append((start, end, name, dtype, tuple(shape)))
  lazy.check_declared_size(path, sum(e - s for s, e, *_ in records), max_gb)
  position = 0
  for start, end, name, *_ in sorted(records, key=lambda r: (r[0], r[1])):
    if start != position:
      raise CheckpointError(
          f"{path}: tensor {name!r}'s data starts at byte {start}, where the data so far ends at "
          f"{position} ({'overlapping another tensor' if start < position else 'leaving a gap'}); "
          "refused, as the safetensors format requires")
    position = end
  if position > body_len:
    raise CheckpointError(f"{path} is truncated: its tensors need {position} bytes of data, the "
                          f"file holds {body_len}")
  out = {}
  for start, end, name, dtype, shape in records:
    out[name] = lazy.LazyArray(shape, dtype, lambda s=start, e=end, d=dtype, sh=shape:
                               _read(path, body_start + s, e - s, d, sh))
  return out


def _read(path: str, offset: int, nbytes: int, dtype, shape) -> np.ndarray:
  raw = lazy.read_at(path, offset, nbytes)
  array = lazy.bfloat16_to_float32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype)
  return array.reshape(shape).copy()


def load(path: str, max_gb: Optional[float] = None) -> dict:
  """{name: array} of a ``.safetensors`` file (``open_lazy``, every tensor read)."""
  return lazy.materialise(open_lazy(path, max_gb))


def save(path: str, arrays: dict) -> None:
  """Writes ``{name: array}`` as a ``.safetensors`` file (for converted or edited weights)."""
  names = {np.dtype(v): k for k, v in _DTYPES.items() if v != "bfloat16"}
  header, offset, chunks = {}, 0, []
  for name, array in arrays.items():
    array = np.ascontiguousarray(array)
    data = array.tobytes()
    header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
    chunks.append(data)
  text = json.dumps(header).encode()
  text += b" " * (-len(text) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
