"""A full disk during a checkpoint save: one error naming the step whose save failed, without
the tracebacks Orbax's background threads log, on a real full filesystem (a 3 MB tmpfs)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def small_disk(tmp_path):
  mount = tmp_path / "small"
  mount.mkdir()
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount)],
                     capture_output=True, text=True)
  if r.returncode != 0:
    pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()[:80]}); needs root")
  yield str(mount)
  subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_one_error_naming_the_failed_step(small_disk):
  r = subprocess.run(
      [sys.executable, "-m", "stolen_jax.main", "--config=configs/demo.py",
       f"--workdir={small_disk}/w", "--config.pretrain.num_examples=512",
       "--config.pretrain.epochs=4", "--config.pretrain.checkpoint_every_epochs=1"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr[-2000:]
  err = r.stderr
  assert "Traceback" not in err and "step None" not in err, err[-3000:]
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and re.match(
      r"error: disk full while saving the checkpoint of step \d+ in .*; free space and rerun",
      errors[0]), err[-2000:]
  step = int(re.search(r"step (\d+)", errors[0]).group(1))
  # The step named is the one whose save was cut short (its unfinished directory removed).
  assert f"checkpoints/{step}.orbax-checkpoint-tmp" in err
  assert not any(".orbax-checkpoint-tmp" in d for _, dirs, _ in os.walk(small_disk) for d in dirs)
