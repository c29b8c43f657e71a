"""Tensors of a weights file that are read only when used.

A weights file is hostile input: its header declares shapes and sizes that its bytes need
not honour. The readers (``torch_reader``, ``safetensors_reader``) check every declaration
against the bytes the file really has before anything is allocated, and hand out
``LazyArray``s: the state-dict matching (``state_dict.find``/``check``) sees names, shapes
and dtypes only, and only the tensors the architecture uses are ever read.
"""

from typing import Callable

import numpy as np

from stolen_jax.errors import CheckpointError

DEFAULT_MAX_WEIGHTS_GB = 4.0  # steal.max_weights_gb / serve.max_weights_gb


class LazyArray:
  """A tensor's name-independent record: ``shape``, ``dtype`` and how to ``read()`` it."""

  def __init__(self, shape: tuple, dtype, read: Callable[[], np.ndarray]):
    self.shape = tuple(int(s) for s in shape)
    self.dtype = np.dtype(np.float32 if dtype == "bfloat16" else dtype)
    self._read = read

  @property
  def size(self) -> int:
    return int(np.prod(self.shape, dtype=object)) if self.shape else 1

  def read(self) -> np.ndarray:
    """The tensor's values (a fresh array that owns its memory)."""
    array = self._read()
    if tuple(array.shape) != self.shape:  # A reader's bug, never the file's: say so.
      raise CheckpointError(f"a tensor read as {array.shape} where {self.shape} was declared")
    return array

  def __repr__(self):
    return f"LazyArray(shape={self.shape}, dtype={self.dtype})"


def is_tensor(value) -> bool:
  """Whether ``value`` is a tensor of a weights file (read or not)."""
  return isinstance(value, (np.ndarray, LazyArray))


def materialise(obj):
  """``obj`` with every ``LazyArray`` of its (nested) containers read."""
  if isinstance(obj, LazyArray):
    return obj.read()
  if isinstance(obj, dict):
    return type(obj)((k, materialise(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(materialise(v) for v in obj)
  return obj


def check_declared_size(path: str, nbytes: int, max_gb) -> None:
  """One error, before anything is read, when a file declares more tensor bytes than
  ``max_gb`` (None: the default) allows."""
  limit_gb = DEFAULT_MAX_WEIGHTS_GB if max_gb is None else float(max_gb)
  if nbytes > limit_gb * 2**30:
    raise CheckpointError(
        f"{path} declares {nbytes / 2**30:.1f} GB of tensors, more than max_weights_gb="
        f"{limit_gb:g} allows; nothing was read (raise steal.max_weights_gb or "
        "serve.max_weights_gb for a larger encoder you trust)")


def element_count(path: str, what: str, shape) -> int:
  """The number of values of ``shape`` (a list of non-negative ints), or one error."""
  if not isinstance(shape, (list, tuple)) or not all(
      isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
    raise CheckpointError(f"{path}: {what} has an invalid shape {str(shape)[:80]} (dimensions "
                          "must be non-negative integers)")
  n = 1
  for s in shape:
    n *= s
  return n


def read_at(path: str, offset: int, nbytes: int) -> bytes:
  """``nbytes`` of the file ``path`` from ``offset``, or one error saying it is truncated."""
  with open(path, "rb") as f:
    f.seek(offset)
    data = f.read(nbytes)
  if len(data) < nbytes:
    raise CheckpointError(f"{path} is truncated (a tensor's bytes end early)")
  return data


def bfloat16_to_float32(raw: bytes) -> np.ndarray:
  """bfloat16 values (little-endian) widened to float32: the upper half of its bits."""
  return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
