"""The Cloud TPU VM launchers, run as a user runs them with only the cloud stubbed:
launch/tpu_setup.sh (what every worker runs) for real with a Python 3.10 first on PATH,
a real uv and a real virtualenv; launch/tpu_vm.sh with a gcloud that copies the upload into
a stand-in VM and runs the remote command there."""

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY310 = sorted(glob.glob("/root/.pyenv/versions/3.10*/bin/python3.10") +
               glob.glob("/usr/bin/python3.10") + glob.glob("/usr/local/bin/python3.10"))
PY311_PREFIX = sorted(glob.glob("/root/.pyenv/versions/3.11*"))
TOOLS = ("bash", "dirname", "basename", "env", "cat", "id", "tar", "gzip", "mkdir", "ls", "cp", "git",
         "uname", "rm", "sed", "sh")


def _bin_dir(tmp_path, python3=None):
  """A PATH of the tools the scripts use, a python3 of 3.10 (the VM image's) first, and
  stand-ins for what touches the cloud or the machine: sudo, gcsfuse, mountpoint."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for tool in TOOLS:
    if shutil.which(tool):
      os.symlink(shutil.which(tool), bin_dir / tool)
  if python3:
    os.symlink(python3, bin_dir / "python3")
  else:  # Answers as 3.10 does, for the dry run where no real 3.10 is installed.
    (bin_dir / "python3").write_text(
        "#!/bin/sh\ncase \"$*\" in *version_info*) exit 1;; *) echo 'Python 3.10.12';; esac\n")
    (bin_dir / "python3").chmod(0o755)
  log = tmp_path / "stubbed.log"
  for stub in ("sudo", "gcsfuse", "mountpoint"):
    (bin_dir / stub).write_text(f"#!/bin/sh\necho \"{stub} $*\" >> {log}\n"
                                + ("exit 1\n" if stub == "mountpoint" else "exit 0\n"))
    (bin_dir / stub).chmod(0o755)
  return bin_dir, log


@pytest.mark.skipif(not PY310 or not PY311_PREFIX or not shutil.which("uv"),
                    reason="needs a Python 3.10 and a 3.11 installation and uv ([test] extra)")
def test_with_only_python310_it_provisions_311_with_uv_and_runs_the_job(tmp_path):
  bin_dir, log = _bin_dir(tmp_path, PY310[0])
  os.symlink(shutil.which("uv"), bin_dir / "uv")
  # uv's managed-Python directory holds a 3.11 already (offline: uv cannot download one here).
  managed = tmp_path / "uv-python" / "cpython-3.11.0-linux-x86_64-gnu"
  managed.mkdir(parents=True)
  for d in ("bin", "lib", "include"):
    os.symlink(os.path.join(PY311_PREFIX[0], d), managed / d)
  home = tmp_path / "home"
  env = {**os.environ, "PATH": str(bin_dir), "HOME": str(home), "SJ_PIP_ARGS": "--no-deps",
         "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv-python"), "VIRTUAL_ENV": ""}
  r = subprocess.run(
      ["bash", "launch/tpu_setup.sh", "bkt", "--", "python", "-c",
       "import sys, importlib.metadata as m; print('job on', sys.version_info[:2], "
       "m.version('stolen_jax'), sys.argv[1:])", "a;b c"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert "no Python >= 3.11 on PATH (Python 3.10" in r.stdout
  assert "job on (3, 11) 0.1.0 ['a;b c']" in r.stdout  # The venv's Python, pip-installed.
  assert os.path.exists(home / "sj" / "bin" / "pip")
  stubbed = log.read_text()
  assert "sudo gcsfuse --implicit-dirs --uid" in stubbed and "-o allow_other bkt /mnt/bkt" in stubbed


def test_dry_run_prints_the_prepare_step_and_the_job(tmp_path):
  bin_dir, _ = _bin_dir(tmp_path)
  env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "SJ_DRY_RUN": "1"}
  r = subprocess.run(
      ["/bin/bash", "launch/tpu_setup.sh", "bkt", "--prepare", "cifar10=/mnt/bkt/raw/c.tar.gz",
       "--", "python", "-m", "stolen_jax.main", "--config=configs/demo.py"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  home = str(tmp_path / "home")
  assert f"{home}/sj/bin/python -m ensurepip" in r.stdout
  assert (f"--config.prepare.format=cifar10 --config.prepare.source=/mnt/bkt/raw/c.tar.gz "
          f"--config.prepare.output={home}/data/cifar10.npz") in r.stdout
  assert r.stdout.rstrip().endswith(f"{home}/sj/bin/python -m stolen_jax.main --config=configs/demo.py")


def test_with_a_newer_python_on_path_it_uses_it(tmp_path):
  newer = shutil.which("python3.11") or shutil.which("python3.12")
  if newer is None:
    pytest.skip("no Python >= 3.11 on this machine's PATH")
  bin_dir, _ = _bin_dir(tmp_path)
  os.symlink(newer, bin_dir / os.path.basename(newer))
  env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "SJ_DRY_RUN": "1"}
  r = subprocess.run(["/bin/bash", "launch/tpu_setup.sh", "bkt", "--", "python", "-V"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  assert "using " in r.stdout and "uv" not in r.stdout
  assert f"-m venv {tmp_path}/home/sj" in r.stdout


def test_tpu_vm_uploads_tracked_files_and_passes_every_flag_whole(tmp_path):
  # A checkout with launch/ committed and an untracked data/ beside it.
  repo = tmp_path / "repo"
  shutil.copytree(os.path.join(ROOT, "launch"), repo / "launch")
  (repo / "setup.cfg").write_text("[metadata]\nname = x\n")
  git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
  for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "checkout"]):
    subprocess.run(git + args, cwd=repo, check=True, capture_output=True)
  (repo / "launch" / "README.md").write_text("edited, not committed\n")
  (repo / "data").mkdir()
  (repo / "data" / "big.npz").write_bytes(b"\0" * 1024)
  # gcloud: scp copies into the stand-in VM's home; ssh runs the command there (its setup in
  # dry run: what it would install and run is printed).
  vm = tmp_path / "vm"
  vm.mkdir()
  bin_dir, _ = _bin_dir(tmp_path)
  (bin_dir / "gcloud").write_text(
      "#!/bin/bash\n"
      f"printf '%s\\n' \"$*\" >> {tmp_path}/gcloud.log\n"
      "case \"$4\" in\n"
      f"  scp) cp \"$5\" {vm}/stolen_jax.tar.gz ;;\n"
      "  ssh) while [[ $1 != --command ]]; do shift; done\n"
      f"       cd {vm} && HOME={vm} SJ_DRY_RUN=1 bash -c \"$2\" ;;\n"
      "esac\n")
  (bin_dir / "gcloud").chmod(0o755)
  flag = "--config.sweep.axes=steal.lambda_=1;20 $HOME `id`"
  r = subprocess.run(["bash", "launch/tpu_vm.sh", "sj", "z", "v4-8", "gs://bkt",
                      "configs/demo.py", flag], cwd=repo, capture_output=True, text=True,
                     env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=120)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
  with tarfile.open(vm / "stolen_jax.tar.gz") as t:
    names = set(t.getnames())
    edited = t.extractfile("launch/README.md").read()
  assert "launch/tpu_setup.sh" in names and not any(n.startswith("data") for n in names)
  assert edited == b"edited, not committed\n"
  job = [line for line in r.stdout.splitlines() if "stolen_jax.main" in line][-1]
  argv = shlex.split(job)
  assert argv[0].endswith("/sj/bin/python") and flag in argv, argv
  assert "--workdir=/mnt/bkt/workdir/demo" in argv and "--config.multihost=False" in argv


def test_ray_and_slurm_launchers_dry_run(tmp_path):
  r = subprocess.run(["bash", "launch/ray_tpu.sh", "--dry_run", "sj", "z", "gs://bkt",
                      "configs/paper/fig2_lambda.py:paper", "--config.sweep.seeds=0,1"],
                     cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert any("--worker=0 --command" in l and "ray\\ start\\ --head" in l for l in lines)
  assert any("--worker=all --command" in l and "ray\\ start\\ --address=HEAD_IP:6379" in l
             for l in lines)
  sweep = shlex.split(shlex.split(lines[-1])[-1])  # The remote command, as its shell splits it.
  assert sweep[sweep.index("&&") + 1].endswith("/sj/bin/python")
  assert {"--config.sweep.executor=ray", "--config.sweep.ray_address=auto",
          "--workdir=/mnt/bkt/workdir/fig2_lambda", "--config.sweep.seeds=0,1"} <= set(sweep)
  r = subprocess.run(["bash", "launch/slurm_sweep.sh", "--dry_run", "/shared/sj",
                      "slurm_partition=gpu,gpus_per_node=1", "configs/demo.py"],
                     cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  assert shlex.split(r.stdout)[-2:] == ["--config.sweep.executor=submitit",
                                        "--config.sweep.resources=slurm_partition=gpu,gpus_per_node=1"]
