"""The provider's side of an EaaS API: answers feature queries, counts and bills them."""

import json
import os
import time
from typing import Callable, Optional

import numpy as np
from absl import logging

from stolen_jax.eaas.answers import as_numbers, problem
from stolen_jax.eaas.rows import parse_rows
from stolen_jax.errors import UserError

FeaturesFn = Callable[[np.ndarray], np.ndarray]
# (true features, the queried uint8 images) -> the features the API answers.
Defense = Callable[[np.ndarray, np.ndarray], np.ndarray]


class QueryBudgetExceeded(UserError):
  """A request would take the caller past its query budget; nothing was answered."""


def identity_defense(features: np.ndarray, images: np.ndarray = None) -> np.ndarray:
  """No defense: the target's features as they are."""
  return features


def _log_entries(path: str, repair: bool = False) -> list[dict]:
  """The entries of a JSON-lines query log. A last line cut short by a crash is not counted
  (with a warning) and, with ``repair``, cut off the file so later lines start clean;
  damage anywhere else is an error that says how to go on."""
  with open(path, "rb") as f:
    data = f.read()
  entries = []
  offset = 0
  lines = data.split(b"\n")
  for i, line in enumerate(lines):
    end = offset + len(line) + 1
    if line.strip():
      try:
        entry = json.loads(line)
        int(entry["count"])
        entries.append(entry)
      except (ValueError, KeyError, TypeError):
        if i == len(lines) - 1 or (i == len(lines) - 2 and not lines[-1].strip()):
          logging.warning("query log %s: its last line is incomplete (a crash while writing); "
                          "it is not counted", path)
          if repair:
            with open(path, "r+b") as f:
              f.truncate(offset)
          break
        raise UserError(
            f"query log {path} is damaged at line {i + 1}: {line[:80]!r}. The log is the record "
            "of what was paid. To go on, restore that line (each line is a JSON object with "
            "'count', the queries of one request) or delete it (its queries are then missing "
            "from the total); the paid answers themselves are kept in the cache beside it") from None
    offset = end
  return entries


def read_query_log(path: str, repair: bool = False) -> tuple[int, int]:
  """(queries, requests) recorded in a JSON-lines query log (see ``_log_entries``)."""
  entries = _log_entries(path, repair)
  return sum(int(e["count"]) for e in entries), len(entries)


class QueryLog:
  """An append-only JSON-lines record of paid requests: one line per request with its
  ``count`` and a running ``total``, plus what the caller attaches (``tag``: which batch;
  ``cache`` and ``rows``: where its answers go), so a lost cache record can be rebuilt and a
  batch paid just before a crash is recognised."""

  def __init__(self, path: Optional[str]):
    from stolen_jax import parallel
    self.path = path if parallel.is_main() else None  # Process 0 keeps the log.
    self.entries: list[dict] = []
    if self.path:
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      if os.path.exists(self.path):
        self.entries = _log_entries(self.path, repair=True)

  @property
  def queries(self) -> int:
    return sum(int(e["count"]) for e in self.entries)

  def tags(self) -> set:
    return {e["tag"] for e in self.entries if e.get("tag")}

  def rows(self, cache: str) -> Optional[np.ndarray]:
    """Rows of ``cache`` whose answers were paid, by the log; None when the log has no row
    records for it (an old log)."""
    mine = [e for e in self.entries
            if e.get("cache") == cache and "rows" in e and not e.get("quarantined")]
    if not mine:
      return None
    return np.unique(np.concatenate([parse_rows(e["rows"]) for e in mine]))

  def append(self, count: int, **fields) -> None:
    entry = {"count": int(count), "total": self.queries + int(count), "time": time.time(), **fields}
    self.entries.append(entry)
    if self.path:
      with open(self.path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())  # The bill is on disk before the answers are used.


class QueryService:
  """Wraps a target ``features_fn`` (uint8 images -> features) as a metered API.

  * one query per image answered; ``queries_used`` counts them over the service's life,
    including earlier processes when ``log_path`` persists the log;
  * ``budget`` (None = unlimited): a request that would exceed it is refused whole, before
    anything is computed;
  * ``defense`` maps the true features to the answered ones, so every consumer of the
    service (the steal, the target's downstream probe) sees the same perturbed answers.
  """

  def __init__(self, features_fn: FeaturesFn, *, budget: Optional[int] = None,
               defense: Defense = identity_defense, log_path: Optional[str] = None,
               account: str = "attacker"):
    self._features_fn = features_fn
    self.account = account  # Who asks: a per-account defense (B4B) answers each apart.
    self.budget = budget
    self.defense = defense
    self.log_path = log_path
    from stolen_jax import parallel
    self.log = QueryLog(log_path)
    self.queries_used, self.requests = parallel.agree([self.log.queries, len(self.log.entries)])

  @property
  def remaining(self) -> Optional[int]:
    return None if self.budget is None else self.budget - self.queries_used

  def query(self, images: np.ndarray, record: Optional[dict] = None,
            journal: Optional[Callable[[np.ndarray], None]] = None) -> np.ndarray:
    """Features of ``images`` (uint8, N x H x W x 3) as the API answers them; costs N queries.

    ``record`` is written into the request's log line; ``journal(answers)`` is called after
    the answers exist and before the request is logged as paid, so a caller can persist them
    first and a crash between paying and storing loses nothing."""
    n = len(images)
    if self.budget is not None and self.queries_used + n > self.budget:
      raise QueryBudgetExceeded(
          f"query of {n} images refused: {self.queries_used} of the budget of {self.budget} "
          f"queries are used, {self.budget - self.queries_used} remain")
    t0 = time.perf_counter()
    features = as_numbers(self._features_fn(images), "the target")
    if problem(features, n) is not None:
      answers = features  # Not one vector per image: the caller's check quarantines it as is.
    elif getattr(self.defense, "per_account", False):
      answers = self.defense(features.astype(np.float32), images, account=self.account)
    else:
      answers = self.defense(features.astype(np.float32), images)
    answers = np.asarray(answers, np.float32)
    if journal is not None:
      journal(answers)
    self.queries_used += n
    self.requests += 1
    self.log.append(n, seconds=round(time.perf_counter() - t0, 4), **(record or {}))
    return answers
