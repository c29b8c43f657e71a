"""bench/seeds.py: a config edited between two runs is recomputed, never read back stale; a
rerun of the same settings restores its figures and keeps the wall time that computed them."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _seeds(workdir, doc, *extra):
  subprocess.run([sys.executable, os.path.join(ROOT, "bench", "seeds.py"),
                  "--config", "tests/configs/tiny_pipeline.py", "--seeds", "0",
                  "--workdir", str(workdir), "--doc", str(doc), *extra],
                 cwd=ROOT, check=True, capture_output=True)
  seed = workdir / "seed0"
  return (json.load(open(seed / "results.json"))["settings"]["epochs"],
          float((seed / "wall_s.txt").read_text()))


@pytest.mark.slow  # Three tiny pipeline runs in subprocesses (about a minute).
def test_an_edited_config_is_recomputed_and_a_restore_keeps_its_wall_time(tmp_path):
  work, doc = tmp_path / "seeds", tmp_path / "seeds.md"
  epochs, _ = _seeds(work, doc)
  assert epochs == 2
  epochs, wall = _seeds(work, doc, "--config.steal.epochs=3")  # Edited: not read back.
  assert epochs == 3 and "--config.steal.epochs=3" in doc.read_text()
  (work / "seed0" / "wall_s.txt").write_text("1234.5\n")  # As if it had taken that long.
  epochs, restored_wall = _seeds(work, doc, "--config.steal.epochs=3")
  assert epochs == 3 and restored_wall == 1234.5
  assert "1234 s" in doc.read_text() or "1235 s" in doc.read_text()
