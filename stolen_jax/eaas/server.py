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
array (or no Idempotency-Key), 401 unknown key, 403 revoked key, 402 over budget, 409 an
Idempotency-Key reused for other images, 413 body, batch, declared pixels or the account's
burst too large, 422 wrong dtype/shape/size, 429 over the account's rate (``Retry-After``).
The limits and why they are checked before decoding: ``eaas.upload``.

Concurrent requests are merged by a batcher thread for up to ``batch_window_ms`` so the
device sees large batches; ``batch_window_ms=0`` answers each request on its own.
"""

import asyncio
import concurrent.futures
import dataclasses
import io
import math
import queue
import threading
import time
from typing import Callable, Optional

import numpy as np

from stolen_jax.eaas import upload
from stolen_jax.eaas.ledger import Ledger, LedgerError, burst_capacity


def npy_bytes(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, np.asarray(array), allow_pickle=False)
  return buf.getvalue()


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


_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}},
                 "required": ["error"]}


def _error_doc(description: str, headers: Optional[dict] = None) -> dict:
  doc = {"description": description,
         "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
  if headers:
    doc["headers"] = headers
  return doc


# The OpenAPI description of POST /v1/features: its bodies and every status it answers, so
# generated clients and schema fuzzers (tests/test_api_fuzz.py) know the contract.
FEATURES_OPENAPI = {
    # An example request (shown by /docs): the client's .npy body and its idempotency key.
    "x-example-request": (
        "python -c \"import numpy as np, sys; np.save(sys.stdout.buffer, "
        "np.zeros((2, 32, 32, 3), np.uint8))\" > batch.npy\n"
        "curl -X POST \"$API/v1/features\" -H 'Authorization: Bearer sk-...' \\\n"
        "     -H 'Idempotency-Key: batch-0001' -H 'Accept: application/json' \\\n"
        "     -H 'Content-Type: application/x-npy' --data-binary @batch.npy"),
    "requestBody": {"required": True, "content": {
        "application/x-npy": {"schema": {"type": "string", "format": "binary"},
                              "description": "np.save of a uint8 (N, S, S, 3) batch"},
        "multipart/form-data": {"schema": {
            "type": "object", "properties": {"files": {
                "type": "array", "items": {"type": "string", "format": "binary"}}}},
            "description": "PNG/JPEG files (any field names), converted to RGB and resized"},
    }},
}
FEATURES_RESPONSES = {
    200: {"description": "Features, float32 (N, D); billed one query per image unless "
                         "X-Replayed is 1",
          "headers": {"X-Replayed": {"description": "1: an earlier request's recorded answer "
                                                    "(free); 0: billed now",
                                     "schema": {"type": "string", "enum": ["0", "1"]}}},
          "content": {"application/x-npy": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {
                          "type": "object", "properties": {"features": {
                              "type": "array", "items": {"type": "array",
                                                         "items": {"type": "number"}}}}},
                          "example": {"features": [[0.0132, -0.0871, 0.2214], [0.0415, 0.1187,
                                                                                 -0.0052]]}}}},
    400: _error_doc("Missing Idempotency-Key, or a body that is not a .npy array / a form"),
    401: _error_doc("Missing or unknown API key"),
    402: _error_doc("The batch would pass the account's budget"),
    403: _error_doc("Revoked API key"),
    409: _error_doc("The Idempotency-Key was used before for other images"),
    413: _error_doc("Body, batch, pixels, or the account's burst exceeded"),
    422: _error_doc("Wrong dtype, shape or size, an empty batch, an undecodable file"),
    429: _error_doc("Over the account's rate", headers={"Retry-After": {
        "description": "seconds to wait", "schema": {"type": "integer"}}}),
}
_AUTH_RESPONSES = {401: _error_doc("Missing or unknown API key"),
                   403: _error_doc("Revoked API key")}
ACCOUNT_RESPONSES = {
    200: {"description": "The caller's account: queries used and remaining of its budget, "
                         "its price and what it has cost so far",
          "content": {"application/json": {"example": {
              "name": "attacker", "used": 512, "remaining": 488, "budget": 1000,
              "price_per_1000": 1.2, "cost": 0.6144, "rate_per_s": 0.0, "revoked": False,
              "burst": None}}}},
    **_AUTH_RESPONSES}
MODEL_RESPONSES = {
    200: {"description": "The served encoder: its feature dimension, the image size it is "
                         "sent, its fingerprint and the defense its answers pass through",
          "content": {"application/json": {"example": {
              "feature_dim": 64, "image_size": 16, "fingerprint": "3be8fe992cbe3c8d",
              "defense": {"name": "none"}}}}}}
HEALTH_RESPONSES = {200: {"description": "The server is up",
                          "content": {"application/json": {"example": {"status": "ok"}}}}}


def make_app(features_fn: Callable[[np.ndarray], np.ndarray], ledger: Ledger, *,
             image_size: int, feature_dim: int, model_info: Optional[dict] = None,
             defense=None, batch_window_ms: float = 5.0, max_batch: int = 1024,
             max_body_bytes: int = 64 << 20, json_max_images: int = 64, b4b=None,
             max_image_pixels: int = 4096 * 4096, max_request_pixels: int = 2 * 4096 * 4096,
             burst_s: float = 1.0, max_concurrent_decodes: int = 2):
  """The FastAPI application serving ``features_fn`` (uint8 NHWC -> true features) through
  ``defense`` (features, images) -> answers, metered by ``ledger``; ``b4b`` (a
  ``defenses.b4b.B4B``) adds per-account noise that grows with the account's coverage and
  maps each account's answers with its own secret transformation (``feature_dim`` is then
  the transformation's, as ``/model`` declares it).
  Limits (``eaas.upload``): body bytes, images per request, declared pixels per image and
  per request; an account limited to r images/s may send at most ``r * burst_s`` images at
  once (its bucket persists in the ledger)."""
  from fastapi import FastAPI, Header, Request, Security
  from fastapi.responses import JSONResponse, Response
  from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
  from starlette.concurrency import run_in_threadpool

  limits = upload.Limits(max_body_bytes=max_body_bytes, max_batch=max_batch,
                         max_image_pixels=max_image_pixels, max_request_pixels=max_request_pixels)
  decode_slots = asyncio.Semaphore(max_concurrent_decodes)  # Bounds decoding memory.

  def answer(images: np.ndarray) -> np.ndarray:
    f = np.asarray(features_fn(images), np.float32)
    return np.asarray(defense(f, images) if defense is not None else f, np.float32)

  batcher = Batcher(answer, batch_window_ms, max_batch) if batch_window_ms > 0 else None
  if b4b is not None:
    feature_dim = b4b.out_dim
  info = {"feature_dim": feature_dim, "image_size": image_size, **(model_info or {}),
          "limits": {**dataclasses.asdict(limits), "burst_s": burst_s}}
  # FastAPI's own /docs and /redoc load scripts from a CDN (blank offline): ours is plain HTML.
  app = FastAPI(title="stolen_jax encoder API", docs_url=None, redoc_url=None,
                description="A metered encoder-as-a-service API (StolenEncoder's threat model).")
  app.state.batcher = batcher
  app.state.ledger = ledger
  bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer sk-...")

  def error(status: int, message: str, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)

  def key_of(credentials: Optional[HTTPAuthorizationCredentials]) -> Optional[str]:
    return credentials.credentials.strip() if credentials is not None else None

  @app.get("/docs", include_in_schema=False)
  def docs():
    from fastapi.responses import HTMLResponse
    from stolen_jax.eaas import docs_page
    return HTMLResponse(docs_page.render(app.openapi()))

  @app.get("/healthz", responses=HEALTH_RESPONSES)
  def healthz():
    return {"status": "ok"}

  @app.get("/v1/model", responses=MODEL_RESPONSES)
  def model():
    return info

  @app.get("/v1/account", responses=ACCOUNT_RESPONSES)
  def account(credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer)):
    try:
      a = ledger.authenticate(key_of(credentials))
    except LedgerError as e:
      return error(e.status, str(e))
    out = a.public()
    out["burst"] = burst_capacity(a.rate_per_s, burst_s) if a.rate_per_s > 0 else None
    if b4b is not None:
      out["b4b_coverage"] = b4b.coverage(a.key_hash)
    return out

  async def decode(request: Request, body: bytes) -> np.ndarray:
    if upload.decoder_kind(request.headers.get("content-type")) == "npy":
      return upload.decode_npy(body)
    files = await upload.form_files(request, body, limits)
    async with decode_slots:
      return await run_in_threadpool(upload.decode_files, files, image_size, limits)

  @app.post("/v1/features", openapi_extra=FEATURES_OPENAPI, responses=FEATURES_RESPONSES)
  async def query(request: Request,
                  credentials: Optional[HTTPAuthorizationCredentials] = Security(bearer),
                  idempotency_key: Optional[str] = Header(
                      None, alias="Idempotency-Key",
                      description="Names this batch: a retry with the same key and images is "
                                  "answered from the record, free (required)"),
                  accept: Optional[str] = Header(
                      None, description="application/json for a JSON answer (small batches)")):
    try:
      account = ledger.authenticate(key_of(credentials))
      if not idempotency_key:
        raise upload.Rejected(400, "missing Idempotency-Key header (derive it from the "
                                   "batch's content)")
      body = await upload.read_body(request, limits.max_body_bytes)
      images = upload.check_batch(await decode(request, body), image_size, limits)
      n = len(images)
      wants_json = "application/json" in (accept or "")
      if wants_json and n > json_max_images:
        raise upload.Rejected(422, f"JSON answers are for at most {json_max_images} images; "
                                   "ask for application/x-npy")
      fingerprint = upload.images_fingerprint(images)
      recorded = ledger.recorded(account, idempotency_key, fingerprint)
      if recorded is not None:  # A retry: the recorded answer, at no charge.
        return _respond(recorded, wants_json, replay=True)
      ledger.check_budget(account, n)
      wait = ledger.take_tokens(account, n, burst_s)
    except (LedgerError, upload.Rejected) as e:
      return error(e.status, str(e))
    if wait > 0:
      return error(429, f"over the rate of {account.rate_per_s:g} images/s; retry in {wait:.2f} s",
                   headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if batcher is not None:
      features = await asyncio.wrap_future(batcher.submit(images))
    else:
      features = await run_in_threadpool(answer, images)
    if b4b is not None:
      features = b4b(account.key_hash, features, images)
    try:
      sent, replayed = ledger.bill(account, idempotency_key, n, npy_bytes(features), fingerprint)
    except LedgerError as e:
      return error(e.status, str(e))
    return _respond(sent, wants_json, replay=replayed)

  def openapi():
    # Idempotency-Key is required (400 without it); it is declared optional in the handler
    # only so that its absence gets this API's JSON error rather than FastAPI's.
    if app.openapi_schema is None:
      doc = FastAPI.openapi(app)
      for p in doc["paths"]["/v1/features"]["post"].get("parameters", []):
        if p["name"] == "Idempotency-Key":
          p["required"] = True
    return app.openapi_schema
  app.openapi = openapi

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
