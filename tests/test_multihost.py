"""Two processes on one machine stand in for a pod: same results, one payer, one writer."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "tests/configs/tiny_pipeline.py"


def _env(devices):
  env = dict(os.environ, JAX_PLATFORMS="cpu", STOLEN_JAX_HEARTBEAT_TIMEOUT="10",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return env


def _two_processes(workdir, *flags, timeout=900):
  return subprocess.run(["bash", "launch/local_multiprocess.sh", "2", CONFIG,
                         f"--workdir={workdir}", *flags], cwd=ROOT,
                        env=dict(_env(1), DEVICES_PER_PROCESS="1"), capture_output=True,
                        text=True, timeout=timeout)


def _one_process(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "stolen_jax.main", f"--config={CONFIG}",
                         f"--workdir={workdir}", *flags], cwd=ROOT, env=_env(2),
                        capture_output=True, text=True, timeout=900)


def _paid(workdir):
  logs = glob.glob(f"{workdir}/query/*/queries.jsonl")
  return len(logs), sum(json.loads(l)["count"] for p in logs for l in open(p))


def test_two_processes_equal_one_and_pay_d_once(tmp_path):
  multi = _two_processes(tmp_path / "multi")
  assert multi.returncode == 0, multi.stderr[-3000:]
  single = _one_process(tmp_path / "single")
  assert single.returncode == 0, single.stderr[-3000:]
  a = json.load(open(tmp_path / "multi" / "results.json"))["raw"][0]
  b = json.load(open(tmp_path / "single" / "results.json"))["raw"][0]
  for k in ("ta", "sa", "cosine", "agreement", "queries"):
    np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-3, err_msg=k)
  assert _paid(tmp_path / "multi") == (1, 32)  # One log, |D| queries: one payer.
  # One copy of each output: no per-process duplicates or leftover temp files.
  leftovers = [p for p in glob.glob(f"{tmp_path}/multi/**/*tmp*", recursive=True)]
  assert not leftovers, leftovers
  assert multi.stdout.count("| Downstream |") == 1  # Only process 0 prints the table.


def test_a_killed_process_stops_the_other_and_a_rerun_resumes(tmp_path):
  workdir = tmp_path / "w"
  flags = [f"--workdir={workdir}", "--config.steal.epochs=10"]
  # Pretrain first (both processes), then a long steal that we interrupt.
  proc = subprocess.Popen(["bash", "launch/local_multiprocess.sh", "2", CONFIG, *flags],
                          cwd=ROOT, env=dict(_env(1)), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
  deadline = time.time() + 600
  while time.time() < deadline and not [
      d for d in glob.glob(f"{workdir}/steal/*/checkpoints/[0-9]*") if os.path.basename(d).isdigit()]:
    time.sleep(1)
  workers = []
  for pid in filter(str.isdigit, os.listdir("/proc")):  # The process with process_id=1.
    try:
      args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
      continue
    if b"--config.process_id=1" in args and f"--workdir={workdir}".encode() in args:
      workers.append(pid)
  assert workers, "no worker process found"
  t_kill = time.time()
  for pid in workers:
    os.kill(int(pid), signal.SIGKILL)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0 and time.time() - t_kill < 200  # Stopped, not hung forever.
  steps = [int(os.path.basename(d)) for d in glob.glob(f"{workdir}/steal/*/checkpoints/[0-9]*")
           if os.path.basename(d).isdigit()]
  assert steps  # (An interrupted save may also have left a temp directory: cleared on rerun.)
  done = max(steps)
  rerun = _two_processes(workdir, "--config.steal.epochs=10", timeout=1200)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  summary = json.load(open(glob.glob(f"{workdir}/steal/*/summary.json")[0]))
  assert summary["resumed_from_step"] >= done > 0 and summary["final_step"] == 20
