"""The API's accounts and ledger in SQLite (WAL): keys, budgets, prices, and every billed request.

Keys are stored as SHA-256 hashes; the plaintext is shown once, when created. Every billed
request is one transaction that checks the account's budget, records the request under its
idempotency key together with its answer and the fingerprint of the images it asked about,
and adds its queries to the account — so a request is billed if and only if its answer was
produced and recorded, a retry of the same idempotency key and images is answered from the
record at no charge, and the same key with other images is refused (409).

Each account's rate limit is a token bucket kept in the same file (``buckets``), so a
restart of the server does not hand every account a fresh burst.

The file holds key hashes and every answer sold: it is created readable by its owner only.

``Ledger`` is the interface; SQLite serves one server process (or several on one host:
SQLite's WAL locking serialises writers). Several hosts would need the same five methods
over a shared transactional database (e.g. PostgreSQL with ``SELECT ... FOR UPDATE`` on the
account row) — see the README.
"""

import dataclasses
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from typing import Optional

from stolen_jax.errors import UserError


class LedgerError(UserError):
  """An account problem, with the HTTP status it maps to."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass
class Account:
  key_hash: str
  name: str
  budget: Optional[int]
  price_per_1000: float
  rate_per_s: float
  used: int
  revoked: bool

  @property
  def remaining(self) -> Optional[int]:
    return None if self.budget is None else self.budget - self.used

  @property
  def cost(self) -> float:
    return round(self.used * self.price_per_1000 / 1000, 6)

  def public(self) -> dict:
    return {"name": self.name, "used": self.used, "remaining": self.remaining,
            "budget": self.budget, "price_per_1000": self.price_per_1000, "cost": self.cost,
            "rate_per_s": self.rate_per_s, "revoked": self.revoked}


def burst_capacity(rate_per_s: float, burst_s: float = 1.0) -> int:
  """The most images one request of an account limited to ``rate_per_s`` may carry: one
  burst of ``burst_s`` seconds' worth, and at least one image."""
  return max(1, int(rate_per_s * burst_s))


def _check_same_images(idempotency_key: str, recorded: Optional[str], asked: Optional[str]) -> None:
  if recorded is not None and asked is not None and recorded != asked:
    raise IdempotencyConflict(
        f"Idempotency-Key {idempotency_key!r} was used for other images; a key names one batch "
        "(derive it from the batch's content)")


def hash_key(key: str) -> str:
  return hashlib.sha256(key.encode()).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
  key_hash TEXT PRIMARY KEY, name TEXT NOT NULL, budget INTEGER, price_per_1000 REAL NOT NULL,
  rate_per_s REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0, revoked INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
  key_hash TEXT NOT NULL, idempotency_key TEXT NOT NULL, count INTEGER NOT NULL,
  answer BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (key_hash, idempotency_key));
CREATE TABLE IF NOT EXISTS buckets (
  key_hash TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
  key_hash TEXT PRIMARY KEY, secret BLOB NOT NULL);
"""

# Hex digits a key-hash prefix needs before ``revoke`` takes it for a hash (shorter strings
# are names only: a name must never revoke a stranger whose hash happens to start with it).
MIN_HASH_PREFIX = 12


class IdempotencyConflict(LedgerError):
  """An idempotency key reused for other images (HTTP 409); nothing is answered or billed."""

  def __init__(self, message: str):
    super().__init__(409, message)


def _create_private(path: str) -> None:
  """Creates ``path`` (if missing) readable and writable by its owner only; SQLite gives its
  ``-wal`` and ``-shm`` files the database file's permissions."""
  if path == ":memory:" or os.path.exists(path):
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
  os.close(fd)


class Ledger:
  """Accounts and billed requests in one SQLite file (WAL; one transaction per request)."""

  def __init__(self, path: str):
    self.path = path
    self._lock = threading.Lock()
    _create_private(path)
    self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    self._db.execute("PRAGMA journal_mode=WAL")
    self._db.execute("PRAGMA synchronous=FULL")  # A committed bill survives a power cut.
    self._db.executescript(_SCHEMA)
    columns = {r[1] for r in self._db.execute("PRAGMA table_info(requests)")}
    if "images_fingerprint" not in columns:  # A ledger written before the column existed.
      self._db.execute("ALTER TABLE requests ADD COLUMN images_fingerprint TEXT")

  def close(self):
    self._db.close()

  def secret(self, key_hash: str) -> bytes:
    """The account's private random secret (B4B's per-account transformation): made on
    first use and kept, so the account's answers live in the same space across restarts."""
    with self._lock:
      self._db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?)", (key_hash, os.urandom(32)))
      return bytes(self._db.execute("SELECT secret FROM secrets WHERE key_hash = ?",
                                    (key_hash,)).fetchone()[0])

  # Admin.
  def add_key(self, name: str, budget: Optional[int], price_per_1000: float = 1.2,
              rate_per_s: float = 0.0) -> str:
    """Creates an account; returns its API key (shown once; only its hash is stored)."""
    if budget is not None and budget < 0:
      raise LedgerError(400, f"budget={budget} must be >= 0")
    key = "sk-" + secrets.token_urlsafe(24)
    with self._lock:
      self._db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, 0, 0, ?)",
                       (hash_key(key), name, budget, float(price_per_1000), float(rate_per_s),
                        time.time()))
    return key

  def accounts(self) -> list[Account]:
    with self._lock:
      rows = self._db.execute("SELECT key_hash, name, budget, price_per_1000, rate_per_s, used, "
                              "revoked FROM accounts ORDER BY created").fetchall()
    return [Account(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

  def revoke(self, name_or_hash: str) -> int:
    """Revokes the accounts named exactly ``name_or_hash``, or else the one account whose
    key hash starts with it (at least ``MIN_HASH_PREFIX`` hex digits; ``list_keys`` shows
    the hashes); returns how many. A hash prefix that matches several accounts is an error."""
    if not name_or_hash:
      raise LedgerError(400, "name the account to revoke")
    with self._lock:
      cur = self._db.execute("UPDATE accounts SET revoked = 1 WHERE name = ?", (name_or_hash,))
      if cur.rowcount:
        return cur.rowcount
      prefix = name_or_hash.lower()
      if len(prefix) < MIN_HASH_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        return 0
      # substr, not LIKE: '_' and '%' in the text are characters, never wildcards.
      rows = self._db.execute("SELECT key_hash FROM accounts WHERE substr(key_hash, 1, ?) = ?",
                              (len(prefix), prefix)).fetchall()
      if len(rows) > 1:
        raise LedgerError(400, f"key hash prefix {prefix!r} matches {len(rows)} accounts; give "
                               "more digits")
      if not rows:
        return 0
      self._db.execute("UPDATE accounts SET revoked = 1 WHERE key_hash = ?", (rows[0][0],))
    return 1

  # Serving.
  def authenticate(self, key: Optional[str]) -> Account:
    """The account of ``key``; 401 unknown, 403 revoked."""
    if not key:
      raise LedgerError(401, "missing API key (Authorization: Bearer KEY)")
    with self._lock:
      r = self._db.execute("SELECT key_hash, name, budget, price_per_1000, rate_per_s, used, "
                           "revoked FROM accounts WHERE key_hash = ?", (hash_key(key),)).fetchone()
    if r is None:
      raise LedgerError(401, "unknown API key")
    account = Account(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
    if account.revoked:
      raise LedgerError(403, f"API key of {account.name!r} is revoked")
    return account

  def recorded(self, account: Account, idempotency_key: str,
               images_fingerprint: Optional[str] = None) -> Optional[bytes]:
    """The recorded answer of an earlier request with this idempotency key, if any; an
    ``IdempotencyConflict`` when that request asked about other images."""
    with self._lock:
      r = self._db.execute("SELECT answer, images_fingerprint FROM requests WHERE key_hash = ? "
                           "AND idempotency_key = ?", (account.key_hash, idempotency_key)).fetchone()
    if r is None:
      return None
    _check_same_images(idempotency_key, r[1], images_fingerprint)
    return bytes(r[0])

  def check_budget(self, account: Account, count: int) -> None:
    """402 when ``count`` more queries would pass the budget (nothing is answered)."""
    if account.budget is not None and account.used + count > account.budget:
      raise LedgerError(402, f"query of {count} images refused: {account.used} of the budget of "
                             f"{account.budget} queries are used, {account.budget - account.used} "
                             "remain")

  def bill(self, account: Account, idempotency_key: str, count: int, answer: bytes,
           images_fingerprint: Optional[str] = None) -> tuple[bytes, bool]:
    """Records the answered request and bills it, atomically. Returns (the answer to send,
    replayed): a concurrent duplicate that won the race is sent its recorded answer at no
    charge, with ``replayed`` True, so the client counts it once."""
    with self._lock:
      try:
        self._db.execute("BEGIN IMMEDIATE")
        r = self._db.execute("SELECT answer, images_fingerprint FROM requests WHERE key_hash = ? "
                             "AND idempotency_key = ?", (account.key_hash, idempotency_key)).fetchone()
        if r is not None:
          self._db.execute("COMMIT")
          _check_same_images(idempotency_key, r[1], images_fingerprint)
          return bytes(r[0]), True
        budget, used = self._db.execute("SELECT budget, used FROM accounts WHERE key_hash = ?",
                                        (account.key_hash,)).fetchone()
        if budget is not None and used + count > budget:
          self._db.execute("ROLLBACK")
          raise LedgerError(402, f"query of {count} images refused: {used} of the budget of "
                                 f"{budget} queries are used, {budget - used} remain")
        self._db.execute("INSERT INTO requests (key_hash, idempotency_key, count, answer, created, "
                         "images_fingerprint) VALUES (?, ?, ?, ?, ?, ?)",
                         (account.key_hash, idempotency_key, count, sqlite3.Binary(answer),
                          time.time(), images_fingerprint))
        self._db.execute("UPDATE accounts SET used = used + ? WHERE key_hash = ?",
                         (count, account.key_hash))
        self._db.execute("COMMIT")
      except LedgerError:
        raise
      except Exception:
        if self._db.in_transaction:
          self._db.execute("ROLLBACK")
        raise
    return answer, False

  def take_tokens(self, account: Account, count: int, burst_s: float = 1.0,
                  now: Optional[float] = None) -> float:
    """The account's token bucket (``rate_per_s`` images per second, holding at most
    ``burst_capacity`` images): 0 if ``count`` images may pass now (and takes them), else the
    seconds to wait. The bucket lives in the ledger, so a restart grants no fresh burst. A
    request larger than the bucket can never pass: a ``LedgerError`` (413) says so."""
    rate = account.rate_per_s
    if rate <= 0:
      return 0.0
    capacity = burst_capacity(rate, burst_s)
    if count > capacity:
      raise LedgerError(413, f"{count} images exceed this account's burst of {capacity} images "
                             f"(rate {rate:g} images/s); send at most {capacity} per request")
    now = time.time() if now is None else now
    with self._lock:
      r = self._db.execute("SELECT tokens, updated FROM buckets WHERE key_hash = ?",
                           (account.key_hash,)).fetchone()
      tokens, updated = (capacity, now) if r is None else r
      # A clock stepped backwards must not mint tokens, nor a far-future stamp freeze them.
      tokens = min(capacity, tokens + max(0.0, now - updated) * rate)
      wait = 0.0 if tokens >= count else (count - tokens) / rate
      if not wait:
        tokens -= count
      self._db.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                       (account.key_hash, tokens, now))
    return wait

  def billed_queries(self, account: Account) -> int:
    """Sum of the recorded requests' counts (equals ``used``: a consistency check)."""
    with self._lock:
      r = self._db.execute("SELECT COALESCE(SUM(count), 0) FROM requests WHERE key_hash = ?",
                           (account.key_hash,)).fetchone()
    return int(r[0])
