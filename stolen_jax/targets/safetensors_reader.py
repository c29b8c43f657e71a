"""safetensors files read as numpy (the format is a length, a JSON header, raw bytes)."""

import json
import struct

import numpy as np

from stolen_jax.errors import CheckpointError

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}


def load(path: str) -> dict:
  """{name: array} of a ``.safetensors`` file (bfloat16 widened to float32)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  if len(data) < 8:
    raise CheckpointError(f"{path} is too short to be a safetensors file")
  (length,) = struct.unpack("<Q", data[:8])
  if length > len(data) - 8 or length > 100 << 20:
    raise CheckpointError(f"{path} is not a safetensors file (header of {length} bytes)")
  try:
    header = json.loads(data[8:8 + length])
  except ValueError:
    raise CheckpointError(f"{path} has an unreadable safetensors header") from None
  body = memoryview(data)[8 + length:]
  out = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype, shape = _DTYPES[entry["dtype"]], tuple(entry["shape"])
      start, end = entry["data_offsets"]
    except (KeyError, TypeError, ValueError):
      raise CheckpointError(f"{path}: tensor {name!r} has an unknown dtype or a bad record "
                            f"({str(entry)[:100]})") from None
    if not 0 <= start <= end <= len(body):
      raise CheckpointError(f"{path}: tensor {name!r} reaches past the end of the file")
    raw = body[start:end]
    if dtype == "bfloat16":
      array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
      array = np.frombuffer(raw, dtype)
    if array.size != int(np.prod(shape)):
      raise CheckpointError(f"{path}: tensor {name!r} holds {array.size} values for shape {shape}")
    out[name] = array.reshape(shape).copy()
  return out


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
