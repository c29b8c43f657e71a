"""The HTTP API against a hostile key holder: decompression bombs, endless bodies, bursts,
reused idempotency keys, the ledger's permissions, revoking by name, keys without budgets."""

import concurrent.futures
import io
import os
import stat
import time

import numpy as np
import pytest

from fake_api_server import fake_features
from stolen_jax import defaults, serve
from stolen_jax.eaas import ledger as ledger_lib, server
from stolen_jax.errors import ConfigError
from test_serve import ThreadServer, _images, _npy, _post

httpx = pytest.importorskip("httpx")
PIL = pytest.importorskip("PIL")


def _app(tmp_path, **kw):
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  kw = {"batch_window_ms": 0, "max_batch": 64, **kw}
  return server.make_app(fake_features, ledger, image_size=4, feature_dim=6, **kw), ledger


def _png(width, height, mode="1") -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.new(mode, (width, height)).save(buf, format="PNG")
  return buf.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header_and_bills_nothing(tmp_path):
  app, ledger = _app(tmp_path, max_image_pixels=1000 * 1000)
  key = ledger.add_key("a", budget=100)
  bomb = _png(11000, 11000)
  assert len(bomb) < 200_000  # Small on the wire, 121 megapixels decoded.
  with ThreadServer(app) as url:
    t0 = time.perf_counter()
    r = httpx.post(url + "/v1/features", files=[("f", ("bomb.png", bomb, "image/png"))],
                   headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "b"}, timeout=30)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 413 and "declares 11000 x 11000" in r.json()["error"]
    assert elapsed < 5, "the header must be checked before any pixel is decoded"
    ok = httpx.post(url + "/v1/features", files=[("f", ("ok.png", _png(8, 8, "RGB"), "image/png"))],
                    headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "ok"})
    assert ok.status_code == 200
  assert ledger.authenticate(key).used == 1


def test_many_images_within_the_per_image_limit_hit_the_request_limit(tmp_path):
  app, ledger = _app(tmp_path, max_image_pixels=100 * 100, max_request_pixels=250 * 100)
  key = ledger.add_key("a", budget=100)
  files = [("f", (f"{i}.png", _png(100, 100, "RGB"), "image/png")) for i in range(3)]
  with ThreadServer(app) as url:
    r = httpx.post(url + "/v1/features", files=files,
                   headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "m"})
  assert r.status_code == 413 and "pixels in all" in r.json()["error"]
  assert ledger.authenticate(key).used == 0


def test_a_chunked_body_without_length_is_answered_413_at_the_limit(tmp_path):
  """The body is refused while it is still arriving: the answer comes after ~the limit, not
  after the client has sent (and the server has held) the whole body."""
  import select
  import socket
  app, ledger = _app(tmp_path, max_body_bytes=20000)
  key = ledger.add_key("a", budget=100)
  with ThreadServer(app) as url:
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /v1/features HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                 "Idempotency-Key: c\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk, sent, answer = b"x" * 4096, 0, b""
    while sent < (4 << 20) and not answer:
      try:
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
      except OSError:
        break
      sent += len(chunk)
      if select.select([sock], [], [], 0.005)[0]:
        answer = sock.recv(65536)
    if not answer:
      try:
        sock.sendall(b"0\r\n\r\n")
      except OSError:
        pass
      answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert sent < (1 << 20), f"answered only after {sent} bytes"
    assert httpx.get(url + "/healthz").status_code == 200
  assert ledger.authenticate(key).used == 0


def test_burst_is_capped_and_survives_a_restart(tmp_path):
  # 0.5 images/s with an 8-second burst: 4 images at once, and a restart within 8 s cannot
  # have refilled the bucket (the test does not depend on how fast the restart is).
  app, ledger = _app(tmp_path, burst_s=8)
  key = ledger.add_key("slow", budget=None, rate_per_s=0.5)
  with ThreadServer(app) as url:
    big = _post(url, key, _npy(_images(8)), idem="big")
    assert big.status_code == 413 and "burst of 4 images" in big.json()["error"], big.text
    assert _post(url, key, _npy(_images(4)), idem="a").status_code == 200
    assert httpx.get(url + "/v1/account", headers={"Authorization": f"Bearer {key}"}).json()[
        "burst"] == 4
  restarted, _ = _app(tmp_path, burst_s=8)  # Same ledger file: the bucket is where it was.
  with ThreadServer(restarted) as url:
    r = _post(url, key, _npy(_images(4, 1)), idem="b")
    assert r.status_code == 429, "a restart must not grant a fresh burst"
  assert ledger.authenticate(key).used == 4


def test_the_http_client_splits_batches_to_the_burst(tmp_path):
  from stolen_jax.eaas import client as client_lib
  app, ledger = _app(tmp_path)
  key = ledger.add_key("slow", budget=None, rate_per_s=1000)
  small = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  with ThreadServer(app) as url:
    svc = client_lib.HTTPService(url, key)
    svc._burst = None
    ledger._db.execute("UPDATE accounts SET rate_per_s = 8")
    f = svc.query(_images(20))
  np.testing.assert_allclose(f, fake_features(_images(20)), rtol=1e-6)
  assert small.authenticate(key).used == 20


def test_idempotency_key_reused_for_other_images_is_a_conflict(tmp_path):
  app, ledger = _app(tmp_path)
  key = ledger.add_key("a", budget=100)
  with ThreadServer(app) as url:
    assert _post(url, key, _npy(_images(3)), idem="same").status_code == 200
    other = _post(url, key, _npy(_images(3, seed=7)), idem="same")
    assert other.status_code == 409 and "other images" in other.json()["error"]
    replay = _post(url, key, _npy(_images(3)), idem="same")
    assert replay.status_code == 200 and replay.headers["x-replayed"] == "1"
  assert ledger.authenticate(key).used == 3


def test_concurrent_duplicates_are_billed_once_and_say_so(tmp_path):
  app, ledger = _app(tmp_path, batch_window_ms=50)
  key = ledger.add_key("a", budget=100)
  body = _npy(_images(5))
  with ThreadServer(app) as url:
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
      answers = list(pool.map(lambda _: _post(url, key, body, idem="dup"), range(6)))
  assert all(r.status_code == 200 for r in answers)
  assert [r.headers["x-replayed"] for r in answers].count("0") == 1
  assert len({r.content for r in answers}) == 1
  assert ledger.authenticate(key).used == 5


def test_the_ledger_is_readable_by_its_owner_only(tmp_path):
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  ledger.add_key("a", budget=1)
  for name in os.listdir(tmp_path):
    mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
    assert mode & 0o077 == 0, (name, oct(mode))


def test_revoke_matches_names_exactly_never_a_strangers_hash(tmp_path, monkeypatch):
  ledger = ledger_lib.Ledger(str(tmp_path / "l.sqlite"))
  # A stranger whose key hash starts with "a" (the key is chosen so, deterministically).
  token = next(f"t{i}" for i in range(10000) if ledger_lib.hash_key(f"sk-t{i}").startswith("a"))
  monkeypatch.setattr(ledger_lib.secrets, "token_urlsafe", lambda n: token)
  stranger = ledger.add_key("stranger", budget=10)
  monkeypatch.undo()
  named_a = ledger.add_key("a", budget=10)
  other = ledger.add_key("b_c", budget=10)
  assert ledger.revoke("a") == 1
  assert ledger.authenticate(stranger).name == "stranger"  # Not revoked.
  assert ledger.revoke("_") == 0 and ledger.revoke("%") == 0
  assert ledger.authenticate(other).name == "b_c"
  with pytest.raises(ledger_lib.LedgerError):
    ledger.authenticate(named_a)
  assert ledger.revoke(ledger_lib.hash_key(f"sk-{token}")[:12]) == 1  # A long prefix works.


def test_add_key_without_a_budget_is_refused_unless_unlimited(tmp_path):
  config = defaults.base_config("serve")
  config.serve = defaults.serve_block()
  config.serve.action = "add_key"
  with pytest.raises(ConfigError, match="serve.budget"):
    serve.run(config, str(tmp_path))
  assert not ledger_lib.Ledger(str(tmp_path / "ledger.sqlite")).accounts()
  config.serve.unlimited = True
  serve.run(config, str(tmp_path))
  assert ledger_lib.Ledger(str(tmp_path / "ledger.sqlite")).accounts()[0].budget is None


def test_openapi_documents_auth_headers_bodies_and_statuses(tmp_path):
  app, _ = _app(tmp_path)
  doc = app.openapi()
  assert any(s.get("scheme") == "bearer" for s in doc["components"]["securitySchemes"].values())
  op = doc["paths"]["/v1/features"]["post"]
  assert op.get("security")
  assert {"Idempotency-Key", "accept"} <= {p["name"] for p in op["parameters"]}
  assert {"application/x-npy", "multipart/form-data"} <= set(op["requestBody"]["content"])
  assert {"200", "400", "401", "402", "403", "409", "413", "422", "429"} <= set(op["responses"])
  assert "Retry-After" in op["responses"]["429"]["headers"]


def test_docs_page_is_served_without_any_external_asset(tmp_path):
  app, _ = _app(tmp_path)
  with ThreadServer(app) as url:
    page = httpx.get(url + "/docs")
  assert page.status_code == 200 and "text/html" in page.headers["content-type"]
  text = page.text
  assert "<script" not in text and "cdn" not in text.lower() and "http://" not in text
  assert "POST /v1/features" in text and "Idempotency-Key" in text and "429" in text
  # Every 200 says what it answers (not "Successful Response"), with an example; the
  # features call shows an example request; authentication is explained once.
  assert "Successful Response" not in text
  assert "Example request:" in text and "--data-binary @batch.npy" in text
  assert text.count("Example answer (200") >= 4 and "&quot;remaining&quot;: 488" in text
  assert text.count("<b>Authentication</b>") == 1


def test_the_steal_says_what_it_paid():
  from stolen_jax import jobs
  assert jobs.paid_line({"queries": 512, "queries_this_run": 512}, 1.2) == "paid 512 queries ($0.6144)"
  line = jobs.paid_line({"queries": 512, "queries_this_run": 200, "api": "http://h:1",
                         "api_cost": 0.6144, "api_used": 512}, 1.2)
  assert line == "paid 512 queries to http://h:1 ($0.6144), 200 of them in this run"
  assert jobs.paid_line({"queries": 512, "restored": True}, 1.2).endswith("nothing paid now")
