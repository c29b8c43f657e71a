"""The attacker's side of the HTTP API: a query service with retries and idempotency keys.

``HTTPService`` has the interface of ``QueryService`` (``query``, ``queries_used``,
``remaining``, ``budget``, ``log``), so ``query_with_cache`` and the steal use it unchanged.
Every request carries an idempotency key derived from the cache's key and the batch's
content: a retry after a timeout or a server crash is answered from the server's ledger at
no charge, so the attacker pays each image once however often the network fails.

What the attacker paid is kept in its own query log (``attach_log``), one line per billed
request, so a steal resumed after a failure reports every query it paid, not only this
process's; a replayed answer whose request is not in the log (the process died between the
server's bill and the log line) is logged then, once. Batches larger than the account's
burst (``/v1/account``) are split.
"""

import hashlib
import io
import time
from typing import Optional

import numpy as np

from stolen_jax.eaas.service import QueryLog
from stolen_jax.errors import UserError


def send_with_retries(send, url: str, retries: int, backoff_s: float, on_unknown=None,
                      retry_unknown: bool = True):
  """``send()``'s response, retried with exponential backoff on connection errors, 429 and
  5xx (honouring ``Retry-After``, at most 30 s); a UserError when it never got through.
  Shared by our API's client and the third-party adapter.

  A request that never reached the API (connection refused, connect timeout) is retried
  freely. One that failed after it was sent (a read timeout, a reset while waiting) has an
  unknown outcome — the API may have answered and billed it: ``on_unknown(error)`` is told,
  and it is retried only when ``retry_unknown`` (an API that deduplicates retries)."""
  import httpx
  delay = backoff_s
  for attempt in range(retries + 1):
    try:
      r = send()
    except httpx.TransportError as e:
      never_sent = isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
      if not never_sent and on_unknown is not None:
        on_unknown(e)
      if not never_sent and not retry_unknown:
        raise UnknownOutcome(f"the request to {url} was sent and then failed before an answer "
                             f"came ({type(e).__name__})") from None
      if attempt == retries:
        raise UserError(f"the API at {url} did not answer after {attempt + 1} tries "
                        f"({type(e).__name__})") from None
      time.sleep(delay)
      delay = min(delay * 2, 5.0)
      continue
    if r.status_code == 429 or r.status_code >= 500:
      if attempt == retries:
        break
      time.sleep(min(float(r.headers.get("retry-after", delay)), 30.0))
      delay = min(delay * 2, 5.0)
      continue
    return r
  raise UserError(f"the API at {url} kept failing: HTTP {r.status_code} {r.text[:200]}")


class UnknownOutcome(UserError):
  """A request was sent and no answer came: it may have been billed; it was not retried."""


class HTTPService:
  """Queries ``url`` (``http(s)://HOST:PORT``) with ``api_key``."""

  def __init__(self, url: str, api_key: Optional[str], *, key_prefix: str = "",
               retries: int = 8, backoff_s: float = 0.25, timeout_s: float = 120.0):
    import httpx
    if not api_key:
      raise UserError(f"steal.target={url} is an HTTP API: give steal.api_key or set "
                      "STOLEN_JAX_API_KEY")
    self.url = url.rstrip("/")
    self._client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"})
    self.key_prefix = key_prefix
    self.retries, self.backoff = retries, backoff_s
    self.queries_used = 0  # Billed to this attacker: its log's total once attached.
    self.replayed = 0
    self.budget = None
    self.defense = None
    self.log = QueryLog(None)
    self._burst = None  # Images per request the account's rate allows (None: no limit).

  def attach_log(self, path: str) -> None:
    """Keeps the paid requests in ``path`` (JSON lines); counts from what it holds."""
    self.log = QueryLog(path)
    self.queries_used = self.log.queries

  def _request(self, method: str, path: str, **kw):
    return send_with_retries(lambda: self._client.request(method, self.url + path, **kw),
                             self.url, self.retries, self.backoff)

  def _check(self, r):
    if r.status_code == 200:
      return r
    try:
      message = r.json().get("error", r.text)
    except ValueError:
      message = r.text
    if r.status_code == 402:
      from stolen_jax.eaas.service import QueryBudgetExceeded
      raise QueryBudgetExceeded(f"the API refused: {message}")
    raise UserError(f"the API at {self.url} answered HTTP {r.status_code}: {message}")

  def model(self) -> dict:
    """The served encoder's description (feature_dim, image_size, fingerprint, defense)."""
    return self._check(self._request("GET", "/v1/model")).json()

  def account(self) -> dict:
    """The caller's account: used, remaining, budget, price, cost."""
    return self._check(self._request("GET", "/v1/account")).json()

  @property
  def remaining(self) -> Optional[int]:
    return self.account()["remaining"]

  def query(self, images: np.ndarray, record: Optional[dict] = None,
            journal=None) -> np.ndarray:
    """Features of ``images`` (uint8 NHWC) as the API answers them; ``record`` goes into the
    query log's line. ``journal(answers)`` sees them before they are logged as paid (the
    caller's check; the server's ledger replays a paid batch, so nothing else is needed)."""
    images = np.ascontiguousarray(images, np.uint8)
    if self._burst is None:
      self._burst = self.account().get("burst") or 0
    if self._burst and len(images) > self._burst:
      return np.concatenate([self.query(images[i:i + self._burst], record)
                             for i in range(0, len(images), self._burst)])  # Checked whole.
    buf = io.BytesIO()
    np.save(buf, images, allow_pickle=False)
    body = buf.getvalue()
    idem = self.key_prefix + hashlib.sha256(body).hexdigest()[:32]
    r = self._check(self._request("POST", "/v1/features", content=body,
                                  headers={"Content-Type": "application/x-npy",
                                           "Idempotency-Key": idem}))
    try:
      answers = np.load(io.BytesIO(r.content), allow_pickle=False)
    except ValueError as e:  # Paid (200), but not an array: the caller's check quarantines it.
      answers = np.asarray(f"not an .npy array ({e}): {r.content[:60]!r}")
    if journal is not None:
      journal(answers)
    if r.headers.get("x-replayed") == "1" and idem in self.log.tags():
      self.replayed += len(images)
    else:  # Billed now, or billed earlier by a process that died before logging it.
      self.queries_used += len(images)
      self.log.append(len(images), **{**(record or {}), "tag": idem,
                                      "replayed": r.headers.get("x-replayed") == "1"})
    return answers

  def close(self):
    self._client.close()
