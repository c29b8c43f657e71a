"""The documentation: every config key has a documented meaning (the site's reference page is
generated from them), and the site builds strictly where MkDocs is installed ([docs])."""

import os
import shutil
import subprocess

import pytest

from stolen_jax import config_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_config_key_has_a_documented_meaning():
  assert config_reference.undocumented() == []
  text = config_reference.markdown()
  for name, block in config_reference.blocks().items():
    for key, _ in config_reference.keys(block):
      assert f"`{name + '.' if name else ''}{key}`" in text


def test_a_new_key_without_a_meaning_is_caught(monkeypatch):
  from stolen_jax import defaults
  real = defaults.probe_block

  def with_new_key():
    block = real()
    block.brand_new_setting = 3
    return block
  monkeypatch.setattr(defaults, "probe_block", with_new_key)
  assert config_reference.undocumented() == ["probe.brand_new_setting"]


def test_the_site_builds_strictly(tmp_path):
  if shutil.which("mkdocs") is None:
    pytest.skip("MkDocs is the [docs] extra")
  r = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                     cwd=ROOT, capture_output=True, text=True, timeout=300,
                     env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert r.returncode == 0, r.stderr[-3000:]
  page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
  assert "steal.lambda_" in page and "sweep.executor" in page


def test_a_results_doc_names_no_machines_data_directory():
  from stolen_jax.docs import relative_data_paths
  arg = "--config.probe.datasets=npz:/data/x/cifar10.npz,npz:../data/sets/mnist.npz"
  assert relative_data_paths(arg) == (
      "--config.probe.datasets=npz:DATA_DIR/cifar10.npz,npz:DATA_DIR/mnist.npz")
  assert relative_data_paths("--config.steal.surrogate=npz:here.npz") == (
      "--config.steal.surrogate=npz:here.npz")  # No directory to hide.
  assert relative_data_paths("--config.steal.surrogate=embedded:scenes") == (
      "--config.steal.surrogate=embedded:scenes")
