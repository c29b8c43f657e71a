"""Crash consistency of the query stage: SIGKILL it at many random times (seeded, bounded),
resume after each kill, and check that the answers equal an uninterrupted run's and that
exactly |D| queries were paid in all (in-process service); through the HTTP API, at most
|D| plus the one batch in flight, and the attacker's count equals the server's bill."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fake_api_server import fake_features
from kill_query_child import images

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_query_child.py")
N, BATCH, KILLS = 160, 8, 10


def _start(directory, *extra):
  proc = subprocess.Popen([sys.executable, CHILD, str(directory), str(N), str(BATCH), *extra],
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  return proc


def _kill_loop(directory, *extra, seed=0):
  rng = np.random.default_rng(seed)
  finished_early = 0
  for _ in range(KILLS):
    proc = _start(directory, *extra)
    time.sleep(float(rng.uniform(0, 0.5)))  # The stage takes ~1.5 s: each kill lands in it.
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
    else:
      finished_early += 1
    proc.wait()
    proc.stdout.close()
  proc = _start(directory, *extra)
  out = proc.stdout.read()
  assert proc.wait() == 0 and "done" in out, out
  return finished_early


def _answers(directory):
  from stolen_jax import eaas
  x = images(N)
  cache = eaas.FeatureCache(str(directory), "surrogate", N, eaas.cache.fingerprint(x),
                            keyed_directory=True)
  assert cache.complete
  return cache.features(), x


def test_killed_query_stage_pays_each_image_exactly_once(tmp_path):
  from stolen_jax.eaas.service import read_query_log
  _kill_loop(tmp_path, seed=0)
  features, x = _answers(tmp_path)
  np.testing.assert_allclose(features, fake_features(x), rtol=1e-6)
  paid, _ = read_query_log(str(tmp_path / "queries.jsonl"))
  assert paid == N, f"{paid} queries paid for {N} images"
  assert not (tmp_path / "surrogate.pending.npz").exists()


def test_killed_http_query_stage_pays_at_most_one_batch_more(tmp_path):
  from test_serve import ThreadServer
  from stolen_jax.eaas import ledger as ledger_lib, server
  from stolen_jax.eaas.service import read_query_log
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  key = ledger.add_key("attacker", budget=10 * N)
  app = server.make_app(lambda im: (time.sleep(0.03), fake_features(im))[1], ledger,
                        image_size=4, feature_dim=6, batch_window_ms=0)
  work = tmp_path / "attacker"
  with ThreadServer(app) as url:
    _kill_loop(work, url, key, seed=1)
  features, x = _answers(work)
  np.testing.assert_allclose(features, fake_features(x), rtol=1e-6)
  used = ledger.authenticate(key).used
  paid, _ = read_query_log(str(work / "api_queries.jsonl"))
  assert N <= used <= N + BATCH
  assert paid == used, f"the attacker counted {paid}, the server billed {used}"
