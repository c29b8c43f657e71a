"""The encoder API over HTTP (FastAPI + uvicorn): metered, keyed, rate-limited, batched.

Endpoints (the OpenAPI page at ``/docs`` documents them):

* ``POST /v1/features`` — body: a uint8 NHWC array as ``.npy`` (``Content-Type:
  application/x-npy``) or PNG/JPEG files as ``multipart/form-data`` (each converted to RGB
  and resized to the served size); headers ``Authorization: Bearer KEY`` and ``Idempotency-Key``.
  Answers ``.npy`` float32 features, or JSON (``{"features": [[...]]}``) when the request
  says ``Accept: application/json``. Billed one query per image, iff the answer was produced.
* ``GET /v1/account`` — used, remaining, budget, price, cost of the caller's key.
* ``GET /v1/model`` — feature dimension, image size, the target's fingerprint, the defense.
* ``GET /healthz`` — liveness.

Errors are JSON ``{"error": ...}`` and bill nothing: 400 a body that is not an ``.npy``
array, 401 unknown key, 403 revoked key, 402 over budget, 413 body or batch too large, 422
wrong dtype/shape/size, 429 over the account's rate (with ``Retry-After``).

Concurrent requests are merged by a batcher thread for up to ``batch_window_ms`` so the
device sees large batches; ``batch_window_ms=0`` answers each request on its own.
"""

import asyncio
import concurrent.futures
import io
import math
import queue
import threading
import time
from typing import Callable, Optional

import numpy as np

from stolen_jax.eaas.ledger import Ledger, LedgerError


def npy_bytes(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, np.asarray(array), allow_pickle=False)
  return buf.getvalue()


class RateLimiter:
  """A token bucket per account: ``rate`` images per second, bursts up to one second's."""

  def __init__(self):
    self._buckets: dict = {}
    self._lock = threading.Lock()

  def take(self, key: str, rate: float, count: int) -> float:
    """0 if ``count`` images may pass now (and takes them), else seconds to wait."""
    if rate <= 0:
      return 0.0
    now = time.monotonic()
    capacity = max(rate, float(count))
    with self._lock:
      tokens, last = self._buckets.get(key, (capacity, now))
      tokens = min(capacity, tokens + (now - last) * rate)
      if tokens >= count:
        self._buckets[key] = (tokens - count, now)
        return 0.0
      self._buckets[key] = (tokens, now)
      return (count - tokens) / rate


class Batcher:
  """Merges concurrent requests into one call of ``answer_fn`` within a short window."""

  def __init__(self, answer_fn: Callable[[np.ndarray], np.ndarray], window_ms: float,
               max_batch: int):
    self.answer_fn, self.window, self.max_batch = answer_fn, window_ms / 1000, max_batch
    self._queue: queue.Queue = queue.Queue()
    self.calls = 0
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def submit(self, images: np.ndarray) -> concurrent.futures.Future:
    fut: concurrent.futures.Future = concurrent.futures.Future()
    self._queue.put((images, fut))
    return fut

  def _loop(self):
    while True:
      items = [self._queue.get()]
      deadline = time.monotonic() + self.window
      size = len(items[0][0])
      while size < self.max_batch:
        left = deadline - time.monotonic()
        if left <= 0:
          break
        try:
          item = self._queue.get(timeout=left)
        except queue.Empty:
          break
        items.append(item)
        size += len(item[0])
      try:
        answers = self.answer_fn(np.concatenate([im for im, _ in items]))
        self.calls += 1
        start = 0
        for im, fut in items:
          fut.set_result(answers[start:start + len(im)])
          start += len(im)
      except Exception as e:  # Every waiting request gets the error; none is billed.
        for _, fut in items:
          fut.set_exception(e)


async def _decode_files(request, image_size: int):
  """PNG/JPEG files of a multipart form -> uint8 (N, S, S, 3), or why not (a string).
  Each image is converted to RGB and resized to the served size, as the data sources do."""
  from PIL import Image
  form = await request.form()
  files = [v for _, v in form.multi_items() if hasattr(v, "read")]
  if not files:
    return "the multipart form holds no files"
  out = []
  for f in files:
    data = await f.read()
    try:
      with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if im.size != (image_size, image_size):
          im = im.resize((image_size, image_size), Image.BILINEAR)
        out.append(np.asarray(im, np.uint8))
    except Exception:
      return f"file {getattr(f, 'filename', '?')!r} is not a decodable image"
  return np.stack(out)


def make_app(features_fn: Callable[[np.ndarray], np.ndarray], ledger: Ledger, *,
             image_size: int, feature_dim: int, model_info: Optional[dict] = None,
             defense=None, batch_window_ms: float = 5.0, max_batch: int = 1024,
             max_body_bytes: int = 64 << 20, json_max_images: int = 64, b4b=None):
  """The FastAPI application serving ``features_fn`` (uint8 NHWC -> true features) through
  ``defense`` (features, images) -> answers, metered by ``ledger``; ``b4b`` (an
  ``eaas.b4b.B4B``) adds per-account noise that grows with the account's coverage."""
  from fastapi import FastAPI, Request
  from fastapi.responses import JSONResponse, Response

  def answer(images: np.ndarray) -> np.ndarray:
    f = np.asarray(features_fn(images), np.float32)
    return np.asarray(defense(f, images) if defense is not None else f, np.float32)

  batcher = Batcher(answer, batch_window_ms, max_batch) if batch_window_ms > 0 else None
  limiter = RateLimiter()
  info = {"feature_dim": feature_dim, "image_size": image_size, **(model_info or {})}
  app = FastAPI(title="stolen_jax encoder API",
                description="A metered encoder-as-a-service API (StolenEncoder's threat model).")
  app.state.batcher = batcher
  app.state.ledger = ledger

  def error(status: int, message: str, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)

  def api_key(request: Request) -> Optional[str]:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None

  @app.get("/healthz")
  def healthz():
    return {"status": "ok"}

  @app.get("/v1/model")
  def model():
    return info

  @app.get("/v1/account")
  def account(request: Request):
    try:
      a = ledger.authenticate(api_key(request))
    except LedgerError as e:
      return error(e.status, str(e))
    out = a.public()
    if b4b is not None:
      out["b4b_coverage"] = b4b.coverage(a.key_hash)
    return out

  @app.post("/v1/features")
  async def query(request: Request):
    try:
      account = ledger.authenticate(api_key(request))
    except LedgerError as e:
      return error(e.status, str(e))
    idem = request.headers.get("idempotency-key")
    if not idem:
      return error(400, "missing Idempotency-Key header (derive it from the batch's content)")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_body_bytes:
      return error(413, f"body of {length} bytes exceeds {max_body_bytes}")
    body = await request.body()
    if len(body) > max_body_bytes:
      return error(413, f"body of {len(body)} bytes exceeds {max_body_bytes}")
    wants_json = "application/json" in request.headers.get("accept", "")
    recorded = ledger.recorded(account, idem)
    if recorded is not None:  # A retry: the recorded answer, at no charge.
      return _respond(recorded, wants_json, replay=True)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
      images = await _decode_files(request, image_size)
      if isinstance(images, str):
        return error(422, images)
    else:
      try:
        images = np.load(io.BytesIO(body), allow_pickle=False)
      except Exception:
        return error(400, "the body is not a .npy array (send np.save of a uint8 NHWC batch, "
                          "or PNG/JPEG files as multipart/form-data)")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3):
      return error(422, f"expected uint8 images of shape (N, {image_size}, {image_size}, 3), got "
                        f"{images.dtype} {images.shape}")
    n = len(images)
    if n == 0:
      return error(422, "empty batch")
    if n > max_batch:
      return error(413, f"{n} images exceed the batch limit of {max_batch}")
    if wants_json and n > json_max_images:
      return error(422, f"JSON answers are for at most {json_max_images} images; ask for "
                        "application/x-npy")
    try:
      ledger.check_budget(account, n)
    except LedgerError as e:
      return error(e.status, str(e))
    wait = limiter.take(account.key_hash, account.rate_per_s, n)
    if wait > 0:
      return error(429, f"over the rate of {account.rate_per_s:g} images/s; retry in {wait:.2f} s",
                   headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if batcher is not None:
      features = await asyncio.wrap_future(batcher.submit(images))
    else:
      from starlette.concurrency import run_in_threadpool
      features = await run_in_threadpool(answer, images)
    if b4b is not None:
      features = b4b(account.key_hash, features, images)
    try:
      sent = ledger.bill(account, idem, n, npy_bytes(features))
    except LedgerError as e:
      return error(e.status, str(e))
    return _respond(sent, wants_json, replay=False)

  def _respond(npy: bytes, wants_json: bool, replay: bool):
    headers = {"X-Replayed": "1" if replay else "0"}
    if wants_json:
      f = np.load(io.BytesIO(npy), allow_pickle=False)
      return JSONResponse({"features": f.tolist()}, headers=headers)
    return Response(npy, media_type="application/x-npy", headers=headers)

  return app


def serve(app, host: str, port: int) -> None:
  """Runs ``app`` with uvicorn until interrupted."""
  import uvicorn
  uvicorn.run(app, host=host, port=port, log_level="warning")
