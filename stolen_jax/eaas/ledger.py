"""The API's accounts and ledger in SQLite (WAL): keys, budgets, prices, and every billed request.

Keys are stored as SHA-256 hashes; the plaintext is shown once, when created. Every billed
request is one transaction that checks the account's budget, records the request under its
idempotency key together with its answer, and adds its queries to the account — so a
request is billed if and only if its answer was produced and recorded, and a retry of the
same idempotency key is answered from the record at no charge.

``Ledger`` is the interface; SQLite serves one server process (or several on one host:
SQLite's WAL locking serialises writers). Several hosts would need the same five methods
over a shared transactional database (e.g. PostgreSQL with ``SELECT ... FOR UPDATE`` on the
account row) — see the README.
"""

import dataclasses
import hashlib
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
"""


class Ledger:
  """Accounts and billed requests in one SQLite file (WAL; one transaction per request)."""

  def __init__(self, path: str):
    self.path = path
    self._lock = threading.Lock()
    self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    self._db.execute("PRAGMA journal_mode=WAL")
    self._db.execute("PRAGMA synchronous=FULL")  # A committed bill survives a power cut.
    self._db.executescript(_SCHEMA)

  def close(self):
    self._db.close()

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
    """Revokes the accounts named so (or with that key hash prefix); returns how many."""
    with self._lock:
      cur = self._db.execute("UPDATE accounts SET revoked = 1 WHERE name = ? OR key_hash LIKE ?",
                             (name_or_hash, name_or_hash + "%"))
    return cur.rowcount

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

  def recorded(self, account: Account, idempotency_key: str) -> Optional[bytes]:
    """The recorded answer of an earlier request with this idempotency key, if any."""
    with self._lock:
      r = self._db.execute("SELECT answer FROM requests WHERE key_hash = ? AND idempotency_key = ?",
                           (account.key_hash, idempotency_key)).fetchone()
    return None if r is None else bytes(r[0])

  def check_budget(self, account: Account, count: int) -> None:
    """402 when ``count`` more queries would pass the budget (nothing is answered)."""
    if account.budget is not None and account.used + count > account.budget:
      raise LedgerError(402, f"query of {count} images refused: {account.used} of the budget of "
                             f"{account.budget} queries are used, {account.budget - account.used} "
                             "remain")

  def bill(self, account: Account, idempotency_key: str, count: int, answer: bytes) -> bytes:
    """Records the answered request and bills it, atomically; returns the answer to send
    (a concurrent duplicate's recorded answer, at no charge, if it won the race)."""
    with self._lock:
      try:
        self._db.execute("BEGIN IMMEDIATE")
        r = self._db.execute("SELECT answer FROM requests WHERE key_hash = ? AND "
                             "idempotency_key = ?", (account.key_hash, idempotency_key)).fetchone()
        if r is not None:
          self._db.execute("COMMIT")
          return bytes(r[0])
        budget, used = self._db.execute("SELECT budget, used FROM accounts WHERE key_hash = ?",
                                        (account.key_hash,)).fetchone()
        if budget is not None and used + count > budget:
          self._db.execute("ROLLBACK")
          raise LedgerError(402, f"query of {count} images refused: {used} of the budget of "
                                 f"{budget} queries are used, {budget - used} remain")
        self._db.execute("INSERT INTO requests VALUES (?, ?, ?, ?, ?)",
                         (account.key_hash, idempotency_key, count, sqlite3.Binary(answer),
                          time.time()))
        self._db.execute("UPDATE accounts SET used = used + ? WHERE key_hash = ?",
                         (count, account.key_hash))
        self._db.execute("COMMIT")
      except LedgerError:
        raise
      except Exception:
        if self._db.in_transaction:
          self._db.execute("ROLLBACK")
        raise
    return answer

  def billed_queries(self, account: Account) -> int:
    """Sum of the recorded requests' counts (equals ``used``: a consistency check)."""
    with self._lock:
      r = self._db.execute("SELECT COALESCE(SUM(count), 0) FROM requests WHERE key_hash = ?",
                           (account.key_hash,)).fetchone()
    return int(r[0])
