"""Stage leases: one process computes a stage however many share the workdir; a dead
holder's lease is taken over after its TTL; and two pipelines started at once on one
workdir train the target once, pay |D| once and print the same table."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from stolen_jax import leases
from stolen_jax.eaas.service import read_query_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = """
import os, sys, time
sys.path.insert(0, {root!r})
from stolen_jax import leases
lease = leases.acquire({d!r}, ttl_s=float(sys.argv[2]), poll_s=0.05)
with open(sys.argv[1], "a") as f:
    f.write(f"start {{os.getpid()}} {{time.time()}}\\n")
if sys.argv[3] == "die":
    os.kill(os.getpid(), 9)
time.sleep(1.0)
with open(sys.argv[1], "a") as f:
    f.write(f"end {{os.getpid()}} {{time.time()}}\\n")
lease.release()
"""


def _holders(tmp_path, modes, ttl=5.0):
  script = HOLD.format(root=ROOT, d=str(tmp_path / "stage"))
  log = tmp_path / "log.txt"
  procs = [subprocess.Popen([sys.executable, "-c", script, str(log), str(ttl), m])
           for m in modes]
  codes = [p.wait(timeout=60) for p in procs]
  return codes, [line.split() for line in log.read_text().splitlines()]


def test_two_processes_hold_a_stage_one_after_the_other(tmp_path):
  codes, events = _holders(tmp_path, ["live", "live"])
  assert codes == [0, 0]
  kinds = [e[0] for e in events]
  assert kinds == ["start", "end", "start", "end"], events  # Never two starts in a row.
  assert events[0][1] == events[1][1] and events[2][1] == events[3][1]
  assert not os.path.exists(tmp_path / "stage" / leases.LEASE)


def test_a_killed_holders_lease_is_taken_over_after_its_ttl(tmp_path):
  codes, events = _holders(tmp_path, ["die"], ttl=1.0)
  assert codes == [-9] and [e[0] for e in events] == ["start"]
  t0 = time.monotonic()
  lease = leases.acquire(str(tmp_path / "stage"), ttl_s=1.0, poll_s=0.05)
  waited = time.monotonic() - t0
  assert 0.9 < waited < 10, waited
  lease.check()
  lease.release()


def test_a_paused_holder_loses_its_lease_and_is_told(tmp_path):
  directory = str(tmp_path / "stage")
  first = leases.acquire(directory, ttl_s=0.4)
  first._stop.set()  # Its heartbeat stops, as in a process paused longer than the TTL.
  second = leases.acquire(directory, ttl_s=0.4, poll_s=0.05)
  with pytest.raises(leases.LeaseLost, match="lost its lease"):
    first.check()
  first.release()  # Gives back nothing of the new owner's.
  second.check()
  assert os.path.exists(os.path.join(directory, leases.LEASE))
  second.release()


def test_a_waiter_stops_waiting_when_the_holder_finished_the_stage(tmp_path):
  directory = str(tmp_path / "stage")
  holder = leases.acquire(directory, ttl_s=5)
  finished = threading.Event()
  threading.Timer(0.3, finished.set).start()
  assert leases.acquire(directory, ttl_s=5, poll_s=0.05, done=finished.is_set) is None
  holder.release()


def _table(out: str) -> list[str]:
  return [line for line in out.splitlines() if line.startswith("| glyphs")]


def test_two_pipelines_at_once_train_the_target_once_and_pay_d_once(tmp_path):
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}
  cmd = [sys.executable, "-m", "stolen_jax.main", "--config=tests/configs/tiny_pipeline.py",
         f"--workdir={tmp_path}/w"]
  procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for _ in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
  trained = [len(re.findall(r"target\s+trained in", out)) for out in outs]
  assert sorted(trained) == [0, 1], outs  # One trained it, the other restored it.
  (log,) = (tmp_path / "w").glob("query/*/queries.jsonl")
  assert read_query_log(str(log))[0] == 32  # |D| paid once.
  assert _table(outs[0]) == _table(outs[1]) and _table(outs[0])


@pytest.mark.slow
def test_a_killed_pipeline_is_finished_by_another_after_the_ttl(tmp_path):
  env = {**os.environ, "PYTHONUNBUFFERED": "1", "STOLEN_JAX_LEASE_TTL_S": "3"}
  cmd = [sys.executable, "-m", "stolen_jax.main", "--config=tests/configs/tiny_pipeline.py",
         f"--workdir={tmp_path}/w", "--config.steal.epochs=6"]
  first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  for line in first.stdout:  # Killed while it holds the steal stage's lease.
    if line.startswith("steal: step"):
      first.send_signal(signal.SIGKILL)
      break
  first.wait(timeout=60)
  assert first.returncode == -9
  steal_dir, = (tmp_path / "w").glob("steal/*")
  assert os.path.exists(steal_dir / leases.LEASE)
  second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
  assert "taken over" in second.stderr
  (log,) = (tmp_path / "w").glob("query/*/queries.jsonl")
  assert read_query_log(str(log))[0] == 32  # Nothing paid twice.
