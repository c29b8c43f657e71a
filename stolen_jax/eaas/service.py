"""The provider's side of an EaaS API: answers feature queries, counts and bills them."""

import json
import os
import time
from typing import Callable, Optional

import numpy as np
from absl import logging

from stolen_jax.errors import UserError

FeaturesFn = Callable[[np.ndarray], np.ndarray]
# (true features, the queried uint8 images) -> the features the API answers.
Defense = Callable[[np.ndarray, np.ndarray], np.ndarray]


class QueryBudgetExceeded(UserError):
  """A request would take the caller past its query budget; nothing was answered."""


def identity_defense(features: np.ndarray, images: np.ndarray = None) -> np.ndarray:
  """No defense: the target's features as they are."""
  return features


def read_query_log(path: str, repair: bool = False) -> tuple[int, int]:
  """(queries, requests) recorded in a JSON-lines query log. A last line cut short by a
  crash is not counted (with a warning) and, with ``repair``, cut off the file so later
  lines start clean; damage anywhere else is an error."""
  with open(path, "rb") as f:
    data = f.read()
  queries = requests = 0
  offset = 0
  lines = data.split(b"\n")
  for i, line in enumerate(lines):
    end = offset + len(line) + 1
    if line.strip():
      try:
        queries += int(json.loads(line)["count"])
        requests += 1
      except (ValueError, KeyError, TypeError):
        if i == len(lines) - 1 or (i == len(lines) - 2 and not lines[-1].strip()):
          logging.warning("query log %s: its last line is incomplete (a crash while writing); "
                          "it is not counted", path)
          if repair:
            with open(path, "r+b") as f:
              f.truncate(offset)
          break
        raise UserError(f"query log {path} is damaged at line {i + 1}: {line[:80]!r}") from None
    offset = end
  return queries, requests


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
               defense: Defense = identity_defense, log_path: Optional[str] = None):
    self._features_fn = features_fn
    self.budget = budget
    self.defense = defense
    self.log_path = log_path
    self.queries_used = 0
    self.requests = 0
    from stolen_jax import parallel
    self._main = parallel.is_main()  # In a multi-process job process 0 keeps the log.
    if log_path and self._main:
      os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
      if os.path.exists(log_path):
        self.queries_used, self.requests = read_query_log(log_path, repair=True)
    self.queries_used, self.requests = parallel.agree([self.queries_used, self.requests])

  @property
  def remaining(self) -> Optional[int]:
    return None if self.budget is None else self.budget - self.queries_used

  def query(self, images: np.ndarray) -> np.ndarray:
    """Features of ``images`` (uint8, N x H x W x 3) as the API answers them; costs N queries."""
    n = len(images)
    if self.budget is not None and self.queries_used + n > self.budget:
      raise QueryBudgetExceeded(
          f"query of {n} images refused: {self.queries_used} of the budget of {self.budget} "
          f"queries are used, {self.budget - self.queries_used} remain")
    t0 = time.perf_counter()
    answers = np.asarray(self.defense(np.asarray(self._features_fn(images), np.float32), images),
                         np.float32)
    self.queries_used += n
    self.requests += 1
    if self.log_path and self._main:
      with open(self.log_path, "a") as f:
        f.write(json.dumps({"count": n, "total": self.queries_used, "time": time.time(),
                            "seconds": round(time.perf_counter() - t0, 4)}) + "\n")
    return answers
