"""Every shipped config loads and passes validation; the demo is pinned to its documented sizes."""

import glob
import importlib.util
import os

import pytest

from stolen_jax import defaults, jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))


def _load(path, arg=None):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_is_valid(path):
  args = [None] + (list(defaults.SCALES) if "/paper/" in path else [])
  for arg in args:
    config = _load(path, arg)
    jobs.validate(config)
    assert "python -m stolen_jax.main --config=configs/" in open(path).read()  # Its command.


def test_demo_is_pinned_to_its_documented_sizes():
  # The README's Quick start and docs/results/demo_seeds.md quote measured runs of exactly
  # these sizes; change them together.
  c = _load(os.path.join(ROOT, "configs", "demo.py"))
  p, s, q = c.pretrain, c.steal, c.probe
  assert (p.dataset, p.num_examples, p.arch, p.width, p.image_size, p.epochs) == (
      "embedded:shapes", 4096, "resnet18", 0.125, 16, 15)
  assert (s.surrogate, s.surrogate_size, s.arch, s.width, s.image_size, s.epochs, s.lambda_) == (
      "embedded:scenes", 2048, "resnet18", 0.125, 16, 20, 20.0)
  assert (q.datasets, q.num_train, q.num_test, q.epochs) == (
      "embedded:glyphs,embedded:textures", 5000, 1000, 200)
  readme = open(os.path.join(ROOT, "README.md")).read()
  assert "2,048 queries" in readme and "4,096" in readme
  doc = open(os.path.join(ROOT, "docs", "results", "demo_seeds.md")).read()
  assert "--config configs/demo.py" in doc  # Written by its command for this config.


def test_reading_a_config_starts_no_jax_backend():
  # A multi-process run calls jax.distributed.initialize after its config is read: building
  # a config (and importing the stages) must not touch a device. Checked in a fresh process.
  import subprocess
  import sys
  code = ("from jax._src import xla_bridge as xb\n"
          "import importlib.util\n"
          "spec = importlib.util.spec_from_file_location('c', 'configs/paper/attacks_x_defenses.py')\n"
          "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.get_config('demo')\n"
          "import stolen_jax.jobs, stolen_jax.steal, stolen_jax.pipeline, stolen_jax.attacks\n"
          "assert not xb._backends, list(xb._backends)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.returncode == 0, out.stderr[-2000:]
