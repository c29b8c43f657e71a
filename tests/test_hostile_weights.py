"""Weights files as a hostile user makes them: each is one clear error (or read correctly),
never a traceback, and never an allocation the file's bytes do not justify."""

import collections
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest

import torch_files as tf
from stolen_jax import targets
from stolen_jax.errors import CheckpointError
from stolen_jax.targets import lazy, safetensors_reader, state_dict, torch_reader

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
W = np.arange(12, dtype=np.float32)


def _peak_mb(fn):
  """(what ``fn`` raised or returned, the peak of Python-allocated memory meanwhile in MB)."""
  tracemalloc.start()
  try:
    try:
      out = fn()
    except CheckpointError as e:
      out = e
    return out, tracemalloc.get_traced_memory()[1] / 2**20
  finally:
    tracemalloc.stop()


def test_a_zip_entry_that_inflates_past_its_storage_is_refused_without_inflating_it(tmp_path):
  path = str(tmp_path / "bomb.pth")
  # 16 floats declared (64 bytes); the entry inflates to 64 MiB of zeros.
  tf.write_zip(path, {"w": tf.Tensor("0", 16, (16,))}, {"0": bytes(64 << 20)}, deflate={"0"})
  assert os.path.getsize(path) < 1 << 20
  err, peak = _peak_mb(lambda: torch_reader.load(path))
  assert isinstance(err, CheckpointError) and "inflates past the 64 bytes" in str(err)
  assert peak < 4, peak


def test_an_expanded_tensor_is_refused_not_materialised(tmp_path):
  path = str(tmp_path / "expanded.pth")
  # One value in storage, a (65536, 65536) stride-0 view of it: 16 GiB if materialised.
  tf.write_zip(path, {"w": tf.Tensor("0", 1, (1 << 16, 1 << 16), stride=(0, 0))},
               {"0": W[:1].tobytes()})
  err, peak = _peak_mb(lambda: torch_reader.load(path))
  assert isinstance(err, CheckpointError) and "expanded or stride-0" in str(err)
  assert peak < 4, peak


def test_tensors_the_architecture_does_not_use_are_never_read(tmp_path):
  path = str(tmp_path / "extra.pth")
  # 'junk' is a bomb; 'w' is what the architecture asks for. Only 'w' is read.
  tf.write_zip(path, {"w": tf.Tensor("0", 12, (3, 4)), "junk": tf.Tensor("1", 16, (16,))},
               {"0": W.tobytes(), "1": bytes(64 << 20)}, deflate={"1"})
  obj = state_dict.read(path)
  assert isinstance(obj["junk"], lazy.LazyArray)
  found, _ = state_dict.find(obj, {"w": (3, 4)})
  state_dict.check(found, {"w": (3, 4)}, "test", "top")
  np.testing.assert_array_equal(lazy.materialise(found["w"]), W.reshape(3, 4))


def test_a_declared_size_beyond_the_limit_is_one_error_before_reading(tmp_path):
  path = str(tmp_path / "huge.pth")
  # Declares 2**33 floats (32 GiB) and ships no bytes for them at all.
  tf.write_zip(path, {"w": tf.Tensor("0", 1 << 33, (1 << 33,))}, {})
  with pytest.raises(CheckpointError, match=r"declares 32.0 GB of tensors, more than "
                                            r"max_weights_gb=4 allows; nothing was read"):
    state_dict.read(path)
  with pytest.raises(CheckpointError, match="lacks the storage"):  # Within a larger limit.
    state_dict.read(path, max_gb=64)


@pytest.mark.parametrize("case, match", [
    ("garbage", "data.pkl is malformed or truncated"),
    ("truncated", "data.pkl is malformed or truncated"),
    ("short_pid", "malformed persistent id"),
    ("negative", "invalid shape"),
    ("past_storage", "reaches past its storage"),
    ("missing_storage", "lacks the storage"),
    ("short_storage", "truncated: archive/data/0 holds 8 of the 48 bytes"),
])
def test_a_malformed_torch_file_is_one_clear_error(tmp_path, case, match):
  path = str(tmp_path / f"{case}.pth")
  good = tf.pickle_bytes({"w": tf.Tensor("0", 12, (3, 4))})
  obj, storages, data = {"w": tf.Tensor("0", 12, (3, 4))}, {"0": W.tobytes()}, None
  if case == "garbage":
    data = b"\x80\x02this is not a pickle at all"
  elif case == "truncated":
    data = good[:len(good) // 2]
  elif case == "short_pid":
    obj = {"w": tf.Tensor("0", 12, (3, 4), pid=("storage", tf.FloatStorage))}
  elif case == "negative":
    obj = {"w": tf.Tensor("0", 12, (-3, 4), stride=(4, 1))}
  elif case == "past_storage":
    obj = {"w": tf.Tensor("0", 12, (3, 4), offset=6)}
  elif case == "missing_storage":
    storages = {}
  elif case == "short_storage":
    storages = {"0": W[:2].tobytes()}
  tf.write_zip(path, obj, storages, pickle_data=data)
  with pytest.raises(CheckpointError, match=match):
    torch_reader.load(path)


def test_a_truncated_file_says_truncated(tmp_path):
  for name in ("torchvision_resnet18.pth", "efficientnet_lite0.pth"):  # zip, legacy
    with open(os.path.join(GOLDEN, name), "rb") as f:
      data = f.read()
    path = str(tmp_path / name)
    with open(path, "wb") as f:
      f.write(data[:len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated"):
      torch_reader.load(path)


def _safetensors(path, header: dict, body: bytes):
  text = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + body)


@pytest.mark.parametrize("header, match", [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, "overlapping another tensor"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, "overlapping another tensor"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 0]}}, "invalid data offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, "leaving a gap"),
    ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, "invalid shape"),
    ({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 16]}},
     "holds 16 bytes for shape"),
    ({"a": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 1 << 22]}}, "truncated"),
    ({"a": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, "invalid shape"),
])
def test_a_malformed_safetensors_file_is_one_clear_error(tmp_path, header, match):
  path = str(tmp_path / "bad.safetensors")
  _safetensors(path, header, W.tobytes()[:32])
  with pytest.raises(CheckpointError, match=match):
    safetensors_reader.load(path)


def test_safetensors_tensors_in_any_header_order_are_read(tmp_path):
  path = str(tmp_path / "ok.safetensors")
  _safetensors(path, {"b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]},
                      "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
               W.tobytes()[:32])
  out = safetensors_reader.load(path)
  np.testing.assert_array_equal(out["a"], W[:4])
  np.testing.assert_array_equal(out["b"], W[4:8].reshape(2, 2))


def test_an_import_target_with_a_hostile_file_is_one_error(tmp_path):
  # Every tensor torchvision's ResNet-18 needs, conv1's storage a bomb: the import reads the
  # tensors it uses and stops at that one with one error.
  path = str(tmp_path / "bomb.pth")
  sd = torch_reader.load(os.path.join(GOLDEN, "torchvision_resnet18.pth"))["state_dict"]
  obj, storages = collections.OrderedDict(), {}
  for i, (name, value) in enumerate(sd.items()):
    obj[name] = tf.Tensor(str(i), value.size, value.shape)
    storages[str(i)] = (bytes(64 << 20) if name == "module.conv1.weight" else
                        np.asarray(value, np.float32).tobytes())
  tf.write_zip(path, obj, storages, deflate={"0"})
  assert list(sd)[0] == "module.conv1.weight"
  with pytest.raises(CheckpointError, match="inflates past"):
    targets.import_variables("torchvision_resnet18", path, input_size=32, width=4 / 64)
