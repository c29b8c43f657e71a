"""PyTorch checkpoints read as numpy, without torch, and without running their code.

Both of torch's formats are read: the zip archive of torch >= 1.6 (``<name>/data.pkl`` and
one file per storage under ``<name>/data/``) and the legacy stream of earlier versions (a
magic number, a protocol version, system info, the pickled object, the list of storage
keys, then each storage's bytes). The pickle is unpickled with a restricted unpickler that
knows only what a state dict is made of: tensors (``torch._utils._rebuild_tensor*``),
parameters, typed storages, ``OrderedDict`` and plain containers. Any other global a file
names (``os.system``, ``builtins.eval``, a custom class) is refused with one error before it
is ever looked up, so nothing in the file is executed.
"""

import collections
import io
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from stolen_jax.errors import CheckpointError

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
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


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


class _Storage:
  """A storage's elements, filled from the archive or the stream."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel = dtype, numel
    self.array = None

  def set_bytes(self, data: bytes) -> None:
    if self.dtype == "bfloat16":  # bfloat16 -> float32: the upper half of a float32's bits.
      bits = np.frombuffer(data, np.uint16)[:self.numel].astype(np.uint32) << 16
      self.array = bits.view(np.float32)
    else:
      self.array = np.frombuffer(data, self.dtype)[:self.numel]


def _tensor(storage, offset, size, stride, *_):
  if not isinstance(storage, _Storage):
    raise CheckpointError("a tensor in the checkpoint has no storage")
  return _LazyTensor(storage, int(offset), tuple(int(s) for s in size),
                     tuple(int(s) for s in stride))


def _tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
  storage.dtype = dtype.dtype if isinstance(dtype, _DType) else storage.dtype
  return _tensor(storage, offset, size, stride)


def _parameter(data, *_):
  return data


class _LazyTensor:
  """A view into a storage whose bytes may arrive after the pickle (legacy format)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def numpy(self) -> np.ndarray:
    base = self.storage.array
    if base is None:
      raise CheckpointError("the checkpoint is truncated: a storage's bytes are missing")
    n = int(np.prod(self.size)) if self.size else 1
    if n == 0:
      return np.zeros(self.size, base.dtype)
    end = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride)) + 1
    if end > len(base):
      raise CheckpointError("the checkpoint is truncated: a tensor reaches past its storage")
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size,
        strides=tuple(st * base.itemsize for st in self.stride))
    return np.array(view)  # A contiguous copy that owns its memory.


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


class _Unpickler(pickle.Unpickler):
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


def _storage_of(pid, storages: dict):
  """A typed storage for a persistent id ('storage', type, key, location, numel[, view])."""
  if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
    raise CheckpointError(f"unexpected persistent id {str(pid)[:80]} in the checkpoint")
  storage_type, key, _, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
  dtype = storage_type.dtype if isinstance(storage_type, (_StorageType, _DType)) else np.uint8
  if key not in storages:
    storages[key] = _Storage(dtype, numel)
  return storages[key]


def _materialise(obj):
  """Every tensor of a nested structure as a numpy array."""
  if isinstance(obj, _LazyTensor):
    return obj.numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _materialise(v)) for k, v in obj.items()) if isinstance(
        obj, collections.OrderedDict) else {k: _materialise(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v) for v in obj)
  return obj


def _load_zip(path: str, data: bytes):
  with zipfile.ZipFile(io.BytesIO(data)) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkl:
      raise CheckpointError(f"{path} is a zip archive without data.pkl: not a torch checkpoint")
    root = pkl[0].split("/")[0]
    if f"{root}/constants.pkl" in names:
      raise CheckpointError(
          f"{path} is a TorchScript archive (torch.jit), whose pickle holds compiled code, not "
          "a state dict; save its weights with torch.jit.load(path).state_dict() first")
    storages: dict = {}
    obj = _Unpickler(io.BytesIO(z.read(pkl[0])), path,
                     lambda pid: _storage_of(pid, storages)).load()
    for key, storage in storages.items():
      member = f"{root}/data/{key}"
      if member not in names:
        raise CheckpointError(f"{path} lacks the storage {member}")
      storage.set_bytes(z.read(member))
  return obj


def _load_legacy(path: str, data: bytes):
  f = io.BytesIO(data)
  storages: dict = {}

  def plain():
    return _Unpickler(f, path, lambda pid: (_ for _ in ()).throw(
        CheckpointError(f"{path}: unexpected persistent id in its header"))).load()
  try:
    magic = plain()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
    raise CheckpointError(f"{path} is neither a torch zip archive nor a legacy torch file") from None
  if magic != LEGACY_MAGIC:
    raise CheckpointError(f"{path} is not a torch checkpoint (no torch magic number)")
  plain()  # protocol version
  sys_info = plain()
  if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
    raise CheckpointError(f"{path} was saved on a big-endian machine; not supported")
  obj = _Unpickler(f, path, lambda pid: _storage_of(pid, storages)).load()
  keys = plain()
  for key in keys:
    storage = storages[str(key)]
    (numel,) = struct.unpack("<q", f.read(8))
    itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(storage.dtype).itemsize
    chunk = f.read(numel * itemsize)
    if len(chunk) < numel * itemsize:
      raise CheckpointError(f"{path} is truncated (a storage's bytes end early)")
    storage.set_bytes(chunk)
  return obj


def load(path: str) -> Any:
  """The object saved in the torch checkpoint ``path`` (typically a state dict, possibly
  nested), with every tensor as a numpy array."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  if zipfile.is_zipfile(io.BytesIO(data)):
    obj = _load_zip(path, data)
  else:
    obj = _load_legacy(path, data)
  try:
    return _materialise(obj)
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001  (a malformed tensor record)
    raise CheckpointError(f"{path}: a tensor cannot be read ({type(e).__name__}: {e})") from None
