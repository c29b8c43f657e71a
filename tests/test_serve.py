"""The HTTP API: statuses, exact billing under retries, crashes and concurrency, batching."""

import concurrent.futures
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fake_api_server import fake_features
from stolen_jax import eaas
from stolen_jax.eaas import client as client_lib, ledger as ledger_lib, server

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class ThreadServer:
  """uvicorn in a thread on a free port."""

  def __init__(self, app):
    self.port = free_port()
    self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                log_level="warning"))
    self.thread = threading.Thread(target=self.server.run, daemon=True)

  def __enter__(self):
    self.thread.start()
    while not self.server.started:
      time.sleep(0.02)
    return f"http://127.0.0.1:{self.port}"

  def __exit__(self, *exc):
    self.server.should_exit = True
    self.thread.join(10)


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)


def _npy(a):
  buf = io.BytesIO()
  np.save(buf, a)
  return buf.getvalue()


@pytest.fixture
def api(tmp_path):
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  app = server.make_app(fake_features, ledger, image_size=4, feature_dim=6,
                        model_info={"fingerprint": "fake"}, batch_window_ms=20, max_batch=64,
                        max_body_bytes=20000)
  with ThreadServer(app) as url:
    yield url, ledger, app


def _post(url, key, body, idem="k1", **headers):
  return httpx.post(url + "/v1/features", content=body, headers={
      "Authorization": f"Bearer {key}", "Idempotency-Key": idem, **headers})


def test_bad_inputs_get_their_status_and_bill_nothing(api):
  url, ledger, _ = api
  key = ledger.add_key("a", budget=10, rate_per_s=0)
  revoked = ledger.add_key("r", budget=10)
  ledger.revoke("r")
  cases = [
      (_post(url, "nope", _npy(_images(2))), 401, "unknown API key"),
      (_post(url, revoked, _npy(_images(2))), 403, "revoked"),
      (_post(url, key, b"garbage"), 400, "not a .npy"),
      (_post(url, key, _npy(_images(2).astype(np.float32))), 422, "uint8"),
      (_post(url, key, _npy(np.zeros((2, 8, 8, 3), np.uint8))), 422, "shape"),
      (_post(url, key, b"x" * 30000), 413, "exceeds"),
      (_post(url, key, _npy(_images(11))), 402, "10 remain"),
  ]
  for r, status, text in cases:
    assert r.status_code == status and text in r.json()["error"], (status, r.text)
  assert ledger.authenticate(key).used == 0
  ok = _post(url, key, _npy(_images(3)), idem="good", Accept="application/json")
  assert ok.status_code == 200 and np.allclose(ok.json()["features"], fake_features(_images(3)))
  assert ledger.authenticate(key).used == 3


def test_retried_request_is_answered_from_the_ledger_free(api):
  url, ledger, _ = api
  key = ledger.add_key("a", budget=100)
  first = _post(url, key, _npy(_images(5)), idem="same")
  again = _post(url, key, _npy(_images(5)), idem="same")
  assert first.content == again.content and again.headers["x-replayed"] == "1"
  assert ledger.authenticate(key).used == 5


def test_rate_limit_answers_429_with_retry_after(tmp_path):
  ledger = ledger_lib.Ledger(str(tmp_path / "l.sqlite"))
  app = server.make_app(fake_features, ledger, image_size=4, feature_dim=6, batch_window_ms=0)
  with ThreadServer(app) as url:
    key = ledger.add_key("slow", budget=None, rate_per_s=4)
    assert _post(url, key, _npy(_images(4)), idem="a").status_code == 200
    r = _post(url, key, _npy(_images(4, 1)), idem="b")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert ledger.authenticate(key).used == 4


def test_concurrent_clients_leave_a_consistent_ledger_and_are_batched(api):
  url, ledger, app = api
  keys = [ledger.add_key(f"c{i}", budget=1000) for i in range(4)]

  def client(i):
    svc = client_lib.HTTPService(url, keys[i % 4])
    for j in range(5):
      np.testing.assert_allclose(svc.query(_images(3, seed=100 * i + j)),
                                 fake_features(_images(3, seed=100 * i + j)), rtol=1e-6)
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(client, range(8)))
  for k in keys:
    a = ledger.authenticate(k)
    assert a.used == 2 * 5 * 3 == ledger.billed_queries(a)
  assert app.state.batcher.calls < 40  # 40 requests merged into fewer device calls.


def test_killed_server_restarted_client_pays_exactly_d(tmp_path):
  ledger_path = str(tmp_path / "ledger.sqlite")
  key = ledger_lib.Ledger(ledger_path).add_key("attacker", budget=1000)
  port = free_port()
  script = os.path.join(os.path.dirname(__file__), "fake_api_server.py")

  def start():
    p = subprocess.Popen([sys.executable, script, ledger_path, str(port)])
    for _ in range(200):
      try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.2)
        return p
      except httpx.TransportError:
        time.sleep(0.05)
    raise RuntimeError("server did not start")

  x = _images(40)
  proc = start()
  svc = client_lib.HTTPService(f"http://127.0.0.1:{port}", key, retries=40, backoff_s=0.1)
  cache = eaas.FeatureCache(str(tmp_path / "cache"), "s", len(x), eaas.cache.fingerprint(x))
  real_query = svc.query
  calls = {"n": 0}

  def query_and_kill(images, **kw):
    calls["n"] += 1
    if calls["n"] == 3:  # SIGKILL the server mid-stage, restart it shortly after.
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      threading.Timer(0.5, lambda: holder.append(start())).start()
    return real_query(images, **kw)
  holder = []
  svc.query = query_and_kill
  f = eaas.query_with_cache(svc, x, cache, 8)
  np.testing.assert_allclose(f, fake_features(x), rtol=1e-6)
  ledger = ledger_lib.Ledger(ledger_path)
  account = ledger.authenticate(key)
  assert account.used == len(x) == ledger.billed_queries(account)
  for p in holder:
    p.send_signal(signal.SIGKILL)
    p.wait()


def target_api(target_path: str, tmp_path):
  """(app, ledger, key): the checkpoint ``target_path`` behind our API, an attacker's key
  with a budget of 1,000 queries at $1.2 per 1,000."""
  from stolen_jax import parallel, steal
  target = steal.open_target(target_path, parallel.make_mesh())
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  app = server.make_app(target.features_fn, ledger, image_size=16,
                        feature_dim=target.meta["feature_dim"],
                        model_info={"fingerprint": target.meta["fingerprint"],
                                    "defense": {"name": "none"}}, batch_window_ms=0)
  return app, ledger, ledger.add_key("attacker", budget=1000, price_per_1000=1.2)


def test_steal_through_http_pays_d_and_matches_in_process(tiny_target, tmp_path):
  from conftest import tiny_steal_config
  from stolen_jax import steal
  app, ledger, key = target_api(tiny_target, tmp_path)
  with ThreadServer(app) as url:
    remote = steal.run(tiny_steal_config(url, api_key=key), str(tmp_path / "remote"))
  local = steal.run(tiny_steal_config(tiny_target), str(tmp_path / "local"))
  assert remote["api_used"] == 32 and remote["api_cost"] == pytest.approx(32 * 1.2 / 1000)
  assert ledger.authenticate(key).used == 32
  np.testing.assert_allclose(remote["final_loss"], local["final_loss"], rtol=1e-4)


def test_png_and_jpeg_uploads_are_answered_and_bad_files_refused(api):
  from PIL import Image
  url, ledger, _ = api
  key = ledger.add_key("a", budget=100)
  x = _images(2)
  files = []
  for i, fmt in enumerate(("PNG", "PNG")):
    buf = io.BytesIO()
    Image.fromarray(x[i]).save(buf, fmt)
    files.append(("images", (f"{i}.png", buf.getvalue(), "image/png")))
  r = httpx.post(url + "/v1/features", files=files,
                 headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "png"})
  assert r.status_code == 200
  np.testing.assert_allclose(np.load(io.BytesIO(r.content)), fake_features(x), rtol=1e-6)
  bad = httpx.post(url + "/v1/features", files=[("images", ("x.png", b"nope", "image/png"))],
                   headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "bad"})
  assert bad.status_code == 422 and "x.png" in bad.json()["error"]
  assert ledger.authenticate(key).used == 2
