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
* the key is read from the environment variable ``auth_env`` (never from a file).

The service has the interface of ``QueryService`` (``query``, ``queries_used``, ``remaining``,
``budget``, ``log``), so the durable cache, the budget, the journal and resumption work as for
our own API. Requests are retried with backoff on connection errors, 429 and 5xx (honouring
``Retry-After``); a request whose answer was lost in transit may be billed twice by an API
that has no idempotency keys — the log counts what this side received.
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
    self.log = QueryLog(None)
    self.queries_used = 0
    self.replayed = 0

  def attach_log(self, path: str) -> None:
    """Keeps the paid requests in ``path``; counts from what it holds."""
    self.log = QueryLog(path)
    self.queries_used = self.log.queries

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
            "cost": round(self.queries_used * self.price_per_1000 / 1000, 6)}

  def _request(self, images: np.ndarray):
    fmt = self.spec.get("image_format", "png")
    if self.spec.get("encoding", "json_base64") == "multipart":
      field = self.spec.get("field", "files")
      kw = {"files": [(field, (f"{i}.{fmt}", _encode(im, fmt), f"image/{fmt}"))
                      for i, im in enumerate(images)]}
    else:
      items = [_fill(self.spec.get("item", "$IMAGE"), base64.b64encode(_encode(im, fmt)).decode())
               for im in images]
      kw = {"json": _fill(copy.deepcopy(self.spec.get("body", {"images": "$ITEMS"})), items=items)}
    from stolen_jax.eaas.client import send_with_retries
    r = send_with_retries(lambda: self._client.post(self.spec["url"], **kw), self.spec["url"],
                          self.retries, self.backoff)
    if r.status_code == 402:
      from stolen_jax.eaas.service import QueryBudgetExceeded
      raise QueryBudgetExceeded(f"the API refused (402): {r.text[:200]}")
    if r.status_code != 200:
      raise UserError(f"the API at {self.spec['url']} answered HTTP {r.status_code}: {r.text[:200]}")
    return r

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
    r = self._request(sent)
    try:
      vectors = np.asarray(select(r.json(), self.spec["vectors"]), np.float32)
    except (ValueError, KeyError, IndexError, TypeError) as e:
      raise UserError(f"the answer of {self.spec['url']} has no vectors at "
                      f"{self.spec['vectors']!r} ({type(e).__name__}: {e}); answer: "
                      f"{r.text[:200]}") from None
    if vectors.ndim != 2 or len(vectors) != n:
      raise UserError(f"{self.spec['url']} answered {vectors.shape} vectors for {n} images")
    if journal is not None:
      journal(vectors)
    self.queries_used += n
    self.log.append(n, **(record or {}))
    return vectors

  def close(self):
    self._client.close()
