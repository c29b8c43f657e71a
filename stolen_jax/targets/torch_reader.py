"""PyTorch checkpoints read as numpy, without torch, and without running their code.

Both of torch's formats are read: the zip archive of torch >= 1.6 (``<name>/data.pkl`` and
one file per storage under ``<name>/data/``) and the legacy stream of earlier versions (a
magic number, a protocol version, system info, the pickled object, the list of storage
keys, then each storage's bytes). The pickle is unpickled with a restricted unpickler that
knows only what a state dict is made of: tensors (``torch._utils._rebuild_tensor*``),
parameters, typed storages, ``OrderedDict`` and plain containers. Any other global a file
names (``os.system``, ``builtins.eval``, a custom class) is refused with one error before it
is ever looked up, so nothing in the file is executed.

The file is hostile input in its sizes too: the pickle is read up to a fixed limit, every
storage's declared size is added up and checked against ``max_weights_gb`` before a byte of
it is read, a zip entry is read only up to the bytes its storage needs (one that inflates
past that is refused), a tensor that declares more values than its storage holds (an
expanded, stride-0 view) is refused, and tensors are ``LazyArray``s read only when used.
"""

import os
import struct
import zipfile
import zlib
from typing import Any, Optional

from stolen_jax.errors import CheckpointError
from stolen_jax.targets import lazy
from stolen_jax.targets.torch_pickle import (  # noqa: F401  (UnsafeCheckpoint: the error users catch)
    PICKLE_ERRORS, UnsafeCheckpoint, Unpickler, itemsize, storage_of, unpickle)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_PICKLE_BYTES = 256 << 20  # A state dict's pickle is names and records, never this large.


def _zip_member(z: zipfile.ZipFile, path: str, member: str, nbytes: int, exact: bool = True):
  """At most ``nbytes`` of a zip entry, never inflating more than one byte past them: an
  entry larger than that is refused (``exact``: one shorter is truncated)."""
  try:
    with z.open(member) as f:
      data = f.read(nbytes + 1)
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
    raise CheckpointError(f"{path} is truncated or damaged: {member} cannot be read "
                          f"({type(e).__name__}: {e})") from None
  if len(data) > nbytes:
    raise CheckpointError(
        f"{path}: {member} inflates past the {nbytes} bytes "
        f"{'its storage needs' if exact else 'a state dict pickle may have'}; refused")
  if exact and len(data) < nbytes:
    raise CheckpointError(f"{path} is truncated: {member} holds {len(data)} of the {nbytes} "
                          "bytes its storage declares")
  return data


def _load_zip(path: str, max_gb):
  try:
    z = zipfile.ZipFile(path)
    names = z.namelist()
  except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
    raise CheckpointError(f"{path} is a truncated or damaged zip archive ({e})") from None
  pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
  if not pkl:
    raise CheckpointError(f"{path} is a zip archive without data.pkl: not a torch checkpoint")
  root = pkl[0].split("/")[0]
  if f"{root}/constants.pkl" in names:
    raise CheckpointError(
        f"{path} is a TorchScript archive (torch.jit), whose pickle holds compiled code, not "
        "a state dict; save its weights with torch.jit.load(path).state_dict() first")
  storages: dict = {}
  obj = unpickle(_zip_member(z, path, pkl[0], MAX_PICKLE_BYTES, exact=False), path, storages,
                  "data.pkl")
  lazy.check_declared_size(path, sum(s.nbytes for s in storages.values()), max_gb)
  for key, storage in storages.items():
    member = f"{root}/data/{key}"
    if member not in names:
      raise CheckpointError(f"{path} lacks the storage {member}")
    storage.reader = lambda nbytes, member=member: _zip_member(z, path, member, nbytes)
  return obj


def _load_legacy(path: str, max_gb):
  storages: dict = {}
  with open(path, "rb") as f:
    def plain():
      return Unpickler(f, path, lambda pid: (_ for _ in ()).throw(
          CheckpointError(f"{path}: unexpected persistent id in its header"))).load()
    try:
      magic = plain()
    except (*PICKLE_ERRORS, CheckpointError):
      raise CheckpointError(f"{path} is neither a torch zip archive nor a legacy torch file"
                            ) from None
    if magic != LEGACY_MAGIC:
      raise CheckpointError(f"{path} is not a torch checkpoint (no torch magic number)")
    try:
      plain()  # protocol version
      sys_info = plain()
      if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError(f"{path} was saved on a big-endian machine; not supported")
      obj = Unpickler(f, path, lambda pid: storage_of(pid, storages, path)).load()
      keys = plain()
    except CheckpointError:
      raise
    except PICKLE_ERRORS as e:
      raise CheckpointError(f"{path}: its pickle is malformed or truncated "
                            f"({type(e).__name__}: {str(e)[:120]})") from None
    lazy.check_declared_size(path, sum(s.nbytes for s in storages.values()), max_gb)
    size = os.fstat(f.fileno()).st_size
    for key in keys if isinstance(keys, (list, tuple)) else ():
      if str(key) not in storages:
        raise CheckpointError(f"{path}: its storage list names {str(key)[:40]}, which no tensor "
                              "declares")
      storage = storages[str(key)]
      head = f.read(8)
      if len(head) < 8:
        raise CheckpointError(f"{path} is truncated (a storage's bytes end early)")
      (numel,) = struct.unpack("<q", head)
      nbytes = numel * itemsize(storage.dtype)
      if numel < 0 or nbytes != storage.nbytes:
        raise CheckpointError(f"{path}: storage {key} holds {numel} values where its tensors "
                              f"declare {storage.numel}")
      if f.tell() + nbytes > size:
        raise CheckpointError(f"{path} is truncated (a storage's bytes end early)")
      storage.reader = lambda n, offset=f.tell(): lazy.read_at(path, offset, n)
      f.seek(nbytes, os.SEEK_CUR)
  return obj


def is_truncated_zip(path: str) -> bool:
  """A file that starts as a zip archive but is not a readable one (cut short)."""
  with open(path, "rb") as f:
    return f.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def open_lazy(path: str, max_gb: Optional[float] = None) -> Any:
  """The object saved in the torch checkpoint ``path`` (typically a state dict, possibly
  nested), every tensor a ``lazy.LazyArray`` whose bytes are read when it is used; the
  file's declared sizes are checked first (``max_gb``: at most that many GB of tensors)."""
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path, max_gb)
    if is_truncated_zip(path):
      raise CheckpointError(f"{path} is a truncated zip archive (its central directory is "
                            "missing): download or copy it again")
  except OSError as e:
    raise CheckpointError(f"cannot read {path}: {e}") from None
  return _load_legacy(path, max_gb)


def load(path: str, max_gb: Optional[float] = None) -> Any:
  """``open_lazy(path)`` with every tensor read as a numpy array."""
  return lazy.materialise(open_lazy(path, max_gb))
