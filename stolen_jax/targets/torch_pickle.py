"""The restricted unpickler of torch checkpoints: what a state dict is made of, and nothing else.

Tensors (``torch._utils._rebuild_tensor*``), parameters, typed storages, ``OrderedDict`` and
plain containers are all a state dict's pickle may name; any other global (``os.system``,
``builtins.eval``, a custom class) is refused before it is looked up. Storages and tensors
are declarations checked against each other as they are unpickled (a tensor never covers
more values than its storage declares); their bytes are read later, when used.
"""

import collections
import io
import pickle
import struct
from typing import Any

import numpy as np

from stolen_jax.errors import CheckpointError
from stolen_jax.targets import lazy

# torch storage class -> numpy dtype of its elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}
# torch dtypes by name (``_rebuild_tensor_v3`` and untyped storages name the dtype).
TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": "bfloat16", "int64": np.int64,
    "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}
# What a malformed pickle raises from inside the unpickler.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, IndexError, TypeError, KeyError,
                  AttributeError, struct.error, RecursionError, UnicodeDecodeError)


class UnsafeCheckpoint(CheckpointError):
  """A checkpoint that names code a state dict never needs; nothing of it was executed."""


class _StorageType:
  """Stands in for ``torch.<X>Storage`` (a name the pickle mentions, never called)."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = STORAGE_DTYPES[name]


class _DType:
  def __init__(self, name: str):
    self.name = name
    self.dtype = TORCH_DTYPES[name]


def itemsize(dtype) -> int:
  """Bytes per element of a storage dtype (bfloat16 included)."""
  return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


class _Storage:
  """A storage as the pickle declares it (dtype, bytes); its bytes are read on first use by
  ``reader(nbytes)``, which the loader sets once it knows where they are."""

  def __init__(self, path: str, key: str, dtype, numel: int):
    self.path, self.key, self.dtype = path, key, dtype
    self.nbytes = numel * itemsize(dtype)  # Fixed by the declaration; a v3 dtype reinterprets.
    self.reader = None
    self._array = None

  @property
  def numel(self) -> int:
    return self.nbytes // itemsize(self.dtype)

  def array(self) -> np.ndarray:
    if self._array is None:
      if self.reader is None:
        raise CheckpointError(f"{self.path} is truncated: storage {self.key}'s bytes are missing")
      data = self.reader(self.nbytes)
      if self.dtype == "bfloat16":
        self._array = lazy.bfloat16_to_float32(data)[:self.numel]
      else:
        self._array = np.frombuffer(data, self.dtype)[:self.numel]
    return self._array


def _tensor(storage, offset, size, stride, *_):
  if not isinstance(storage, _Storage):
    raise CheckpointError("a tensor in the checkpoint has no storage")
  path = storage.path
  size, stride = tuple(size), tuple(stride)
  n = lazy.element_count(path, f"a tensor of storage {storage.key}", size)
  if (not isinstance(offset, int) or offset < 0 or len(stride) != len(size)
      or not all(isinstance(s, int) and s >= 0 for s in stride)):
    raise CheckpointError(f"{path}: a tensor of storage {storage.key} has an invalid offset or "
                          f"strides ({offset}, {str(stride)[:80]})")
  if n > storage.numel:
    raise CheckpointError(
        f"{path}: a tensor of shape {size} declares {n} values over a storage of "
        f"{storage.numel} (an expanded or stride-0 view); refused, not materialised (save "
        "the tensor with .contiguous() or .clone() first)")
  if n and offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 > storage.numel:
    raise CheckpointError(f"{path}: a tensor of storage {storage.key} reaches past its storage")
  return _LazyTensor(storage, offset, size, stride)


def _tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
  if isinstance(storage, _Storage) and isinstance(dtype, _DType):
    storage.dtype = dtype.dtype
  return _tensor(storage, offset, size, stride)


def _parameter(data, *_):
  return data


class _LazyTensor(lazy.LazyArray):
  """A view into a storage whose bytes are read on first use."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.stride = storage, offset, stride
    super().__init__(size, storage.dtype, self._view)

  def _view(self) -> np.ndarray:
    base = self.storage.array()
    if self.size == 0:
      return np.zeros(self.shape, base.dtype)
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.shape,
        strides=tuple(st * base.itemsize for st in self.stride))
    return np.array(view)  # A contiguous copy that owns its memory (checked: ≤ the storage).


# (module, name) -> what the restricted unpickler returns for it. Nothing else is allowed.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): tuple,
}


class Unpickler(pickle.Unpickler):
  """Unpickles only ``_ALLOWED``'s globals and torch's storage and dtype names."""

  def __init__(self, file, path: str, persistent_load):
    super().__init__(file)
    self._path = path
    self._persistent = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name in TORCH_DTYPES:
      return _DType(name)
    raise UnsafeCheckpoint(
        f"{self._path} names the global {module}.{name}, which a state dict never needs; the "
        "file is refused and nothing in it was executed (export the model's state_dict(), "
        "or convert it with torch.load(..., weights_only=True) where you trust it)")

  def persistent_load(self, pid):
    return self._persistent(pid)


def storage_of(pid, storages: dict, path: str):
  """A typed storage for a persistent id ('storage', type, key, location, numel[, view])."""
  if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
    raise CheckpointError(f"{path}: malformed persistent id {str(pid)[:80]} in the checkpoint")
  storage_type, key, numel = pid[1], str(pid[2]), pid[4]
  if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
    raise CheckpointError(f"{path}: storage {key} declares an invalid size {str(numel)[:40]}")
  dtype = storage_type.dtype if isinstance(storage_type, (_StorageType, _DType)) else np.uint8
  if key not in storages:
    storages[key] = _Storage(path, key, dtype, numel)
  return storages[key]


def unpickle(data: bytes, path: str, storages: dict, what: str):
  """The object a pickle holds, its storages declared into ``storages``; one error for a
  malformed or truncated pickle."""
  try:
    return Unpickler(io.BytesIO(data), path, lambda pid: storage_of(pid, storages, path)).load()
  except CheckpointError:
    raise
  except PICKLE_ERRORS as e:
    raise CheckpointError(f"{path}: its {what} is malformed or truncated "
                          f"({type(e).__name__}: {str(e)[:120]})") from None
