"""Any embedding API as a metered query service, from a small declared adapter (JSON).

A third-party API (Clarifai, a cloud vision embedding endpoint, a colleague's server) has
its own protocol. The adapter declares it::

  {"name": "clarifai-like", "url": "https://api.example.com/v2/models/embed/outputs",
   "auth_header": "Authorization", "auth_prefix": "Key ", "auth_env": "EMBED_API_KEY",
   "encoding": "json_base64", "image_format": "png", "image_size": 224,
   "body": {"inputs": "$ITEMS"}, "item": {"data": {"image": {"base64": "$IMAGE"}}},
   "vectors": "outputs[*].data.embeddings[0].vector",
   "max_batch": 32, "price_per_1000": 1.2}

* ``encoding``: ``json_base64`` (the body is ``body`` with ``$ITEMS`` replaced by one
  ``item`` per image, ``$IMAGE`` by its base64 PNG/JPEG) or ``multipart`` (one file per
  image in the form field ``field``, default ``files``);
* ``vectors``: where the answer's vectors are — dotted keys, ``[i]`` an index, ``[*]`` every
  element of a list — giving one vector per image, in order;
* the key is read from the environment variable ``auth_env`` (never from a file);
* ``headers`` (extra request headers), ``timeout_s`` (default 60), ``retries`` (default 6),
  ``fingerprint`` (the served model's identity, when the URL does not say it),
  ``feature_dim`` (checked against every answer), ``price_per_1000``;
* ``idempotency_header``: a header the API deduplicates requests by (e.g.
  ``Idempotency-Key``); each request carries a key derived from its images, so a retry is
  billed once. ``retry_on_timeout: true`` allows retrying an API without one (each lost
  answer may then be billed again).

The service has the interface of ``QueryService`` (``query``, ``queries_used``, ``remaining``,
``budget``, ``log``), so the durable cache, the budget, the journal and resumption work as for
our own API. Requests are retried with backoff on connection errors, 429 and 5xx (honouring
``Retry-After``). Bills are counted honestly: a request whose outcome is unknown (sent, then
a read timeout or a reset) may have been billed, so it is counted as ``maybe_billed`` (in
the paid line and the summary) and retried only where the adapter declares
``idempotency_header`` or ``retry_on_timeout: true``; an answer received and then rejected
(no vectors at the declared path, too few of them) is counted as paid.
"""

import base64
import copy
import hashlib
import io
import json
import os
import re
from typing import Optional

import numpy as np

from stolen_jax.eaas.service import QueryLog
from stolen_jax.errors import ConfigError, UserError

REQUIRED = ("url", "vectors")


def load_adapter(path: str) -> dict:
  """The adapter declared in the JSON file ``path``, checked."""
  try:
    with open(os.path.expanduser(path)) as f:
      spec = json.load(f)
  except OSError as e:
    raise ConfigError(f"adapter {path!r} cannot be read: {e}") from None
  except ValueError as e:
    raise ConfigError(f"adapter {path!r} is not JSON: {e}") from None
  missing = [k for k in REQUIRED if k not in spec]
  if missing:
    raise ConfigError(f"adapter {path!r} lacks {missing}; see stolen_jax/eaas/adapter.py")
  if spec.get("encoding", "json_base64") not in ("json_base64", "multipart"):
    raise ConfigError(f"adapter {path!r}: encoding must be json_base64 or multipart")
  return spec


def select(answer, path: str):
  """The value at ``path`` ('a.b[0].c', 'outputs[*].vector') of a decoded JSON answer."""
  tokens = re.findall(r"[^.\[\]]+|\[\*\]|\[\d+\]", path)

  def walk(node, rest):
    if not rest:
      return node
    head, tail = rest[0], rest[1:]
    if head == "[*]":
      return [walk(item, tail) for item in node]
    if head.startswith("["):
      return walk(node[int(head[1:-1])], tail)
    return walk(node[head], tail)
  return walk(answer, tokens)


def _encode(image: np.ndarray, fmt: str) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG" if fmt.lower() in ("jpg", "jpeg") else "PNG")
  return buf.getvalue()


def _without_rows(record: Optional[dict]) -> dict:
  """A request's log fields without its cache rows: a line for queries that bought no
  usable answer must not tell the cache those rows were answered."""
  return {k: v for k, v in (record or {}).items() if k != "rows"}


def _fill(template, image_b64: Optional[str] = None, items=None):
  if template == "$IMAGE":
    return image_b64
  if template == "$ITEMS":
    return items
  if isinstance(template, dict):
    return {k: _fill(v, image_b64, items) for k, v in template.items()}
  if isinstance(template, list):
    return [_fill(v, image_b64, items) for v in template]
  return template


class AdapterService:
  """A third-party embedding API behind the ``QueryService`` interface."""

  def __init__(self, spec: dict, *, budget: Optional[int] = None, retries: int = 6,
               backoff_s: float = 0.25):
    import httpx
    self.spec = spec
    self.budget = budget
    self.defense = None
    self.max_batch = int(spec.get("max_batch", 32))
    self.price_per_1000 = float(spec.get("price_per_1000", 0.0))
    self.retries, self.backoff = int(spec.get("retries", retries)), backoff_s
    headers = dict(spec.get("headers", {}))
    if spec.get("auth_header"):
      key = os.environ.get(spec.get("auth_env", ""), "")
      if not key:
        raise UserError(f"the adapter {spec.get('name', spec['url'])} reads its key from "
                        f"${spec.get('auth_env')}; set it")
      headers[spec["auth_header"]] = spec.get("auth_prefix", "") + key
    self._client = httpx.Client(timeout=float(spec.get("timeout_s", 60)), headers=headers)
    self.idempotency_header = spec.get("idempotency_header")
    self.retry_on_timeout = bool(spec.get("retry_on_timeout", False))
    self.log = QueryLog(None)
    self.queries_used = 0
    self.replayed = 0

  def attach_log(self, path: str) -> None:
    """Keeps the paid requests in ``path``; counts from what it holds."""
    self.log = QueryLog(path)
    self.queries_used = self.log.queries

  @property
  def maybe_billed(self) -> int:
    """Queries of requests whose outcome is unknown (sent, no answer): perhaps billed."""
    return sum(int(e.get("maybe_billed", 0)) for e in self.log.entries)

  @property
  def remaining(self) -> Optional[int]:
    return None if self.budget is None else self.budget - self.queries_used

  def model(self) -> dict:
    """What is known of the served model: its identity (the adapter's declared fingerprint,
    else its URL and protocol) and the image size it is sent."""
    ident = self.spec.get("fingerprint") or json.dumps(
        {k: self.spec.get(k) for k in ("url", "body", "item", "vectors", "image_size")},
        sort_keys=True)
    return {"fingerprint": hashlib.sha256(ident.encode()).hexdigest()[:16],
            "image_size": self.spec.get("image_size"), "feature_dim": self.spec.get("feature_dim"),
            "defense": {"name": "none", "note": "third-party API: its own processing is unknown"}}

  def account(self) -> dict:
    """This side's count and bill (the API's own account page is not assumed)."""
    return {"name": self.spec.get("name", self.spec["url"]), "used": self.queries_used,
            "maybe_billed": self.maybe_billed,
            "cost": round(self.queries_used * self.price_per_1000 / 1000, 6)}

  def _request(self, images: np.ndarray, record: dict):
    fmt = self.spec.get("image_format", "png")
    if self.spec.get("encoding", "json_base64") == "multipart":
      field = self.spec.get("field", "files")
      kw = {"files": [(field, (f"{i}.{fmt}", _encode(im, fmt), f"image/{fmt}"))
                      for i, im in enumerate(images)]}
    else:
      items = [_fill(self.spec.get("item", "$IMAGE"), base64.b64encode(_encode(im, fmt)).decode())
               for im in images]
      kw = {"json": _fill(copy.deepcopy(self.spec.get("body", {"images": "$ITEMS"})), items=items)}
    from stolen_jax.eaas.client import UnknownOutcome, send_with_retries
    if self.idempotency_header:  # The same images, the same key: a rerun's retry is deduplicated.
      kw["headers"] = {self.idempotency_header: hashlib.sha256(images.tobytes()).hexdigest()[:32]}
    unknown = []
    try:
      r = send_with_retries(lambda: self._client.post(self.spec["url"], **kw), self.spec["url"],
                            self.retries, self.backoff, on_unknown=unknown.append,
                            retry_unknown=bool(self.idempotency_header or self.retry_on_timeout))
    except UserError as e:
      if unknown:  # Each lost answer may be a bill (one in all, where retries are deduplicated).
        self._maybe_billed(len(images) * (1 if self.idempotency_header else len(unknown)),
                           record, unknown)
      if isinstance(e, UnknownOutcome):
        raise UnknownOutcome(
            f"{e}: the API may have billed these {len(images)} queries (counted as maybe billed). "
            "Not retried: the adapter declares no idempotency_header and not retry_on_timeout: "
            "true, and retrying an API that does not deduplicate requests may bill them twice. "
            "A rerun asks again (raise timeout_s for a slow API)") from None
      raise
    if unknown and not self.idempotency_header:  # Answered in the end, after lost answers.
      self._maybe_billed(len(images) * len(unknown), record, unknown)
    if r.status_code == 402:
      from stolen_jax.eaas.service import QueryBudgetExceeded
      raise QueryBudgetExceeded(f"the API refused (402): {r.text[:200]}")
    if r.status_code != 200:
      raise UserError(f"the API at {self.spec['url']} answered HTTP {r.status_code}: {r.text[:200]}")
    return r

  def _maybe_billed(self, count: int, record: Optional[dict], errors: list) -> None:
    self.log.append(0, maybe_billed=count, why=sorted({type(e).__name__ for e in errors}),
                    **_without_rows(record))

  def query(self, images: np.ndarray, record: Optional[dict] = None, journal=None) -> np.ndarray:
    """One request for ``images`` (at most ``max_batch``): their vectors, journaled and then
    logged as paid."""
    images = np.ascontiguousarray(images, np.uint8)
    if len(images) > self.max_batch:
      return np.concatenate([self.query(images[i:i + self.max_batch], record, journal)
                             for i in range(0, len(images), self.max_batch)])
    n = len(images)
    if self.budget is not None and self.queries_used + n > self.budget:
      from stolen_jax.eaas.service import QueryBudgetExceeded
      raise QueryBudgetExceeded(f"query of {n} images refused: {self.queries_used} of the budget "
                                f"of {self.budget} queries are used")
    size = self.spec.get("image_size")
    sent = images
    if size and images.shape[1:3] != (size, size):
      from stolen_jax.data.sources import resize_images
      sent = resize_images(images, int(size))
    r = self._request(sent, record)
    try:
      vectors = np.asarray(select(r.json(), self.spec["vectors"]), np.float32)
    except (ValueError, KeyError, IndexError, TypeError) as e:
      # Answered (200), so billed: counted as paid before the answer is refused.
      self.queries_used += n
      self.log.append(n, rejected="no vectors", **_without_rows(record))
      raise UserError(f"the answer of {self.spec['url']} has no vectors at "
                      f"{self.spec['vectors']!r} ({type(e).__name__}: {e}); its {n} queries are "
                      f"counted as paid; answer: {r.text[:200]}") from None
    if journal is not None:  # The caller checks shape and dimension (a bad batch: quarantined).
      journal(vectors)
    self.queries_used += n
    self.log.append(n, **(record or {}))
    if journal is None and (vectors.ndim != 2 or len(vectors) != n):
      raise UserError(f"{self.spec['url']} answered {vectors.shape} vectors for {n} images; "
                      f"its {n} queries are counted as paid")
    return vectors

  def close(self):
    self._client.close()
