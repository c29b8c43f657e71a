"""Paying for the answers a cache lacks, batch by batch, never twice."""

import hashlib
import os
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from stolen_jax.eaas.rows import _describe, format_rows

if TYPE_CHECKING:
  from stolen_jax.eaas.cache import FeatureCache


def query_with_cache(service, images: np.ndarray, cache: "FeatureCache", batch_size: int = 256) -> np.ndarray:
  """Answers for every image: cached ones are free, the rest are queried batch by batch and
  stored as they arrive. Returns the (N, D) features.

  The cache is first reconciled with the service's query log (a batch paid just before a
  crash is stored from its journal; a lost row record is rebuilt). The budget is checked for
  the whole missing set before the first query: a stage that cannot finish pays nothing.
  """
  cache.reconcile(getattr(service, "log", None))
  batch_size = min(batch_size, getattr(service, "max_batch", None) or batch_size)
  missing = np.flatnonzero(~cache.answered)
  remaining = getattr(service, "remaining", None)
  if len(missing) and remaining is not None and remaining < len(missing):
    from stolen_jax.eaas.service import QueryBudgetExceeded
    raise QueryBudgetExceeded(
        f"the query stage needs {len(missing)} more queries ({len(images) - len(missing)} of "
        f"{len(images)} are cached) but only {remaining} of the budget of {service.budget} "
        "remain; nothing was queried")
  if len(missing):
    logging.info("querying the service for %d of %d examples (%d cached)", len(missing),
                 len(images), len(images) - len(missing))
  for start in range(0, len(missing), batch_size):
    idx = missing[start:start + batch_size]
    tag = hashlib.sha256(f"{cache.name}|{_describe(cache.key)}|{idx.tobytes().hex()}|"
                         f"{os.urandom(8).hex()}".encode()).hexdigest()[:24]
    answers = service.query(images[idx], record={"tag": tag, "cache": cache.name,
                                                 "rows": format_rows(idx)},
                            journal=lambda a, idx=idx, tag=tag: cache.journal(tag, idx, a))
    cache.store(idx, answers)
    cache.clear_journal()
  return cache.features()
