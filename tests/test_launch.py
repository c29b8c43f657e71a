"""launch/tpu_setup.sh, the script every Cloud TPU VM worker runs, tried here in dry-run with a
Python 3.10 first on PATH standing in for the tpu-ubuntu2204-base image's."""

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python310(bin_dir):
  """A python3 of version 3.10 in ``bin_dir``: a real one where the machine has it, else a
  stand-in that answers as 3.10 does."""
  real = sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10") +
                glob.glob("/usr/bin/python3.10") + glob.glob("/usr/local/bin/python3.10"))
  target = os.path.join(bin_dir, "python3")
  if real:
    os.symlink(real[0], target)
  else:
    with open(target, "w") as f:
      f.write("#!/bin/sh\ncase \"$*\" in *version_info*) exit 1;; *) echo 'Python 3.10.12';; esac\n")
    os.chmod(target, 0o755)


def _setup(tmp_path, extra_bins=()):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _python310(str(bin_dir))
  for tool in ("dirname", "mountpoint", "env", "cat"):  # What the script needs besides Python.
    path = shutil.which(tool)
    if path:
      os.symlink(path, bin_dir / tool)
  for name, path in extra_bins:
    os.symlink(path, bin_dir / name)
  env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "SJ_DRY_RUN": "1"}
  return subprocess.run(
      ["/bin/bash", "launch/tpu_setup.sh", "bkt", "--prepare", "cifar10=/mnt/bkt/raw/c.tar.gz",
       "--", "python", "-m", "stolen_jax.main", "--config=configs/demo.py"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_with_only_python310_it_provisions_311_with_uv_and_runs_the_job(tmp_path):
  r = _setup(tmp_path)
  assert r.returncode == 0, r.stderr
  out = r.stdout
  home = str(tmp_path / "home")
  assert "no Python >= 3.11 on PATH (Python 3.10" in out
  assert "-m pip install --user --quiet uv" in out
  assert f"{home}/.local/bin/uv python install 3.11" in out
  assert f"{home}/.local/bin/uv venv --python 3.11 {home}/sj" in out
  assert "installing gcsfuse" in out and "apt-get\\ install\\ -y\\ -q\\ gcsfuse" in out
  assert "sudo gcsfuse --implicit-dirs -o allow_other bkt /mnt/bkt" in out
  assert f"{home}/sj/bin/python -m pip install --quiet -e .\\[tpu\\]" in out
  assert (f"--config.prepare.format=cifar10 --config.prepare.source=/mnt/bkt/raw/c.tar.gz "
          f"--config.prepare.output={home}/data/cifar10.npz") in out
  assert out.rstrip().endswith(f"{home}/sj/bin/python -m stolen_jax.main --config=configs/demo.py")


def test_with_a_newer_python_on_path_it_uses_it(tmp_path):
  newer = shutil.which("python3.11") or shutil.which("python3.12")
  if newer is None:
    pytest.skip("no Python >= 3.11 on this machine's PATH")
  r = _setup(tmp_path, extra_bins=[(os.path.basename(newer), newer)])
  assert r.returncode == 0, r.stderr
  assert "using " in r.stdout and "uv" not in r.stdout
  assert f"-m venv {tmp_path}/home/sj" in r.stdout
