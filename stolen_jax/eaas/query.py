"""Paying for the answers a cache lacks, batch by batch, never twice."""

import hashlib
import os
from typing import TYPE_CHECKING, Optional

import numpy as np
from absl import logging

from stolen_jax.eaas import answers
from stolen_jax.eaas.rows import _describe, _ranges, format_rows

if TYPE_CHECKING:
  from stolen_jax.eaas.cache import FeatureCache


def query_with_cache(service, images: np.ndarray, cache: "FeatureCache", batch_size: int = 256,
                     feature_dim: Optional[int] = None) -> np.ndarray:
  """Answers for every image: cached ones are free, the rest are queried batch by batch and
  stored as they arrive. Returns the (N, D) features.

  The cache is first reconciled with the service's query log (a batch paid just before a
  crash is stored from its journal; a lost row record is rebuilt). The budget is checked for
  the whole missing set before the first query: a stage that cannot finish pays nothing.
  Every batch is checked (``answers.problem``: shape, dimension — the cache's and
  ``feature_dim``, the stage's —, dtype, finiteness) before it is journaled or stored; a bad
  one is counted as paid, quarantined, and the stage stops with a TargetAnswerError.
  """
  cache.reconcile(getattr(service, "log", None))
  redo = answers.quarantine_cached_rows(cache)
  if redo:
    logging.warning("query cache %s: %d cached answers are not finite (cached before answers "
                    "were checked); they are quarantined and asked again", cache.base, redo)
  batch_size = min(batch_size, getattr(service, "max_batch", None) or batch_size)
  missing = np.flatnonzero(~cache.answered)
  remaining = getattr(service, "remaining", None)
  if len(missing) and remaining is not None and remaining < len(missing):
    from stolen_jax.eaas.service import QueryBudgetExceeded
    raise QueryBudgetExceeded(
        f"the query stage needs {len(missing)} more queries ({len(images) - len(missing)} of "
        f"{len(images)} are cached) but only {remaining} remain"
        + (f" of the budget of {service.budget}" if service.budget is not None else
           " on the API's account")
        + "; nothing was queried" + answers.quarantine_note([cache]))
  if len(missing):
    logging.info("querying the service for %d of %d examples (%d cached)", len(missing),
                 len(images), len(images) - len(missing))
  for start in range(0, len(missing), batch_size):
    idx = missing[start:start + batch_size]
    tag = hashlib.sha256(f"{cache.name}|{_describe(cache.key)}|{idx.tobytes().hex()}|"
                         f"{os.urandom(8).hex()}".encode()).hexdigest()[:24]
    record = {"tag": tag, "cache": cache.name, "rows": format_rows(idx)}
    dims = (("the first answers'", cache.feature_dim), ("the target's declared", feature_dim))
    bad = {}

    def journal(a, idx=idx, tag=tag, record=record, dims=dims, bad=bad):
      bad["checked"] = True
      why = answers.problem(a, len(idx), dims)
      if why is None:
        cache.journal(tag, idx, a)
        return
      # Paid, but not usable: kept apart, and the log line says so (its rows are not answers).
      bad["why"], bad["path"] = why, answers.quarantine(cache, tag, idx, a, why)
      record["quarantined"] = os.path.basename(bad["path"])
    result = service.query(images[idx], record=record, journal=journal)
    if "checked" not in bad:  # A service that called no journal (a split burst): checked now.
      journal(result)
    if "why" in bad:
      raise answers.TargetAnswerError(
          f"the target answered {bad['why']} of batch {start // batch_size + 1} (rows "
          f"{_ranges(idx)} of {cache.name}); its {len(idx)} answers were paid and are kept in "
          f"{bad['path']}; the stage will not use them. A rerun asks the target again for these "
          f"{len(idx)} images ({len(idx)} queries); if it answers so again, the fault is the "
          "target's (its weights, its preprocessing, its deployment), not the steal's")
    cache.store(idx, result)
    cache.clear_journal()
  return cache.features()
