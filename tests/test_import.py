"""Published weights imported without torch: golden outputs of every architecture (fixtures
written once by tests/fixtures/make_golden.py with PyTorch), both torch formats and
safetensors, nested and prefixed state dicts, and checkpoints that must be refused."""

import os

import jax
import numpy as np
import pytest

from stolen_jax import targets
from stolen_jax.errors import CheckpointError
from stolen_jax.targets import state_dict, torch_reader

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")

# (registry name, weights file, the reduced architecture the fixture was written with, size)
CASES = [
    ("torchvision_resnet18", "torchvision_resnet18.pth", dict(width=4 / 64), 32),
    ("torchvision_resnet50", "torchvision_resnet50.safetensors", dict(width=4 / 64), 32),
    ("clip_rn50", "clip_rn50.pt", dict(width=4, output_dim=32, heads=2), 64),
    ("clip_vit_b16", "clip_vit_b16.pth", dict(image_size=32, width=64, layers=2, heads=4,
                                               output_dim=16), 32),
    ("dino_vit_b16", "dino_vit_b16.pth", dict(image_size=32, width=64, layers=2, heads=4), 32),
    ("efficientnet_lite0", "efficientnet_lite0.pth", dict(width=0.125, head=32), 64),
]


@pytest.mark.parametrize("name, weights, arch, size", CASES, ids=[c[0] for c in CASES])
def test_imported_weights_match_pytorch_outputs(name, weights, arch, size):
  module, variables, _ = targets.import_variables(name, os.path.join(GOLDEN, weights),
                                                  input_size=size, **arch)
  golden = np.load(os.path.join(GOLDEN, f"{name}.outputs.npz"))
  out = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, golden["inputs"]))
  assert out.shape == golden["outputs"].shape
  np.testing.assert_allclose(out, golden["outputs"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("weights", ["malicious.pth", "malicious_legacy.pth"])
def test_a_checkpoint_that_names_code_is_refused_and_nothing_runs(weights, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # The payload would touch a file here.
  with pytest.raises(torch_reader.UnsafeCheckpoint, match="posix.system|os.system|nt.system"):
    torch_reader.load(os.path.join(GOLDEN, weights))
  assert not (tmp_path / "STOLEN_JAX_PWNED").exists()


def test_nested_and_prefixed_state_dicts_are_found():
  obj = torch_reader.load(os.path.join(GOLDEN, "torchvision_resnet18.pth"))
  assert obj["arch"] == "resnet18" and "module.conv1.weight" in obj["state_dict"]
  found, where = state_dict.find(obj, {"conv1.weight": (4, 3, 7, 7), "fc.bias": (10,)})
  assert "conv1.weight" in found and "state_dict" in where and "module." in where


def test_a_missing_or_mismatched_tensor_names_the_parameter_and_its_shape(tmp_path):
  from stolen_jax.targets.safetensors_reader import save as write
  sd = torch_reader.load(os.path.join(GOLDEN, "efficientnet_lite0.pth"))
  del sd["_blocks.3._depthwise_conv.weight"]
  sd["_conv_head.weight"] = sd["_conv_head.weight"][:, :-1]
  path = str(tmp_path / "broken.safetensors")
  write(path, sd)
  with pytest.raises(CheckpointError) as e:
    targets.import_variables("efficientnet_lite0", path, input_size=64, width=0.125, head=32)
  text = str(e.value)
  assert "_blocks.3._depthwise_conv.weight: missing (expected shape (48, 1, 5, 5))" in text
  assert "_conv_head.weight: shape (32, 39, 1, 1), expected (32, 40, 1, 1)" in text


def test_a_file_that_is_not_a_checkpoint_is_one_error(tmp_path):
  (tmp_path / "x.pth").write_bytes(b"hello, not a checkpoint")
  with pytest.raises(CheckpointError, match="not a torch checkpoint|neither"):
    torch_reader.load(str(tmp_path / "x.pth"))
  with pytest.raises(CheckpointError, match="does not exist"):
    state_dict.read(str(tmp_path / "missing.pth"))
