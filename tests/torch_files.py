"""Torch zip checkpoints written without torch, with whatever a hostile file may declare.

A file torch itself writes never declares a tensor larger than its storage, a storage of
2 GiB deflated into a few MB, or a shape with a negative dimension: these files are made
byte by byte, the way an attacker would. The pickle is written by the standard pickler with
stand-ins defined here, whose global names are then renamed to torch's (protocol 2 names a
global as text, ``c<module>\\n<name>\\n``).
"""

import io
import pickle
import zipfile


class FloatStorage:
  """Stands in for ``torch.FloatStorage`` in the pickle (renamed when written)."""


def _rebuild_tensor_v2(*args):  # Stands in for torch._utils._rebuild_tensor_v2.
  raise AssertionError("never called: the pickle is only written here")


class Tensor:
  """A tensor record: a view (offset, size, stride) of the storage ``key``."""

  def __init__(self, key, numel, size, stride=None, offset=0, pid=None):
    self.key, self.numel, self.size, self.offset = key, numel, tuple(size), offset
    self.pid = pid  # A persistent id other than torch's ("storage", type, key, "cpu", numel).
    if stride is None:
      stride, acc = [], 1
      for s in reversed(self.size):
        stride.insert(0, acc)
        acc *= max(s, 1)
    self.stride = tuple(stride)

  def __reduce__(self):
    import collections
    return (_rebuild_tensor_v2, (_StorageRef(self.key, self.numel, self.pid), self.offset, self.size,
                                 self.stride, False, collections.OrderedDict()))


class _StorageRef:
  def __init__(self, key, numel, pid=None):
    self.key, self.numel, self.pid = key, numel, pid


class _Pickler(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      return obj.pid or ("storage", FloatStorage, obj.key, "cpu", obj.numel)
    return None


def pickle_bytes(obj) -> bytes:
  """``obj`` (with ``Tensor`` records) pickled as torch names its globals."""
  buf = io.BytesIO()
  _Pickler(buf, protocol=2).dump(obj)
  return (buf.getvalue()
          .replace(f"c{__name__}\n_rebuild_tensor_v2\n".encode(),
                   b"ctorch._utils\n_rebuild_tensor_v2\n")
          .replace(f"c{__name__}\nFloatStorage\n".encode(), b"ctorch\nFloatStorage\n"))


def write_zip(path, obj, storages: dict, deflate=(), pickle_data=None) -> None:
  """A torch zip archive at ``path``: ``obj``'s pickle (or ``pickle_data``) as data.pkl and
  ``storages`` {key: bytes} under data/ (the keys in ``deflate`` compressed)."""
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle_bytes(obj) if pickle_data is None else pickle_data)
    z.writestr("archive/version", "3\n")
    for key, data in storages.items():
      z.writestr(f"archive/data/{key}", data,
                 compress_type=zipfile.ZIP_DEFLATED if key in deflate else zipfile.ZIP_STORED)
