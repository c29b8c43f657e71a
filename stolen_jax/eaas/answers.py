"""A target's answers checked before they are trusted, and bad ones kept apart.

Whatever answers (our model, a ``callable:``, our API, an ``api:`` adapter) may answer
wrongly: NaN from a broken model, another dimension after a redeploy, a list of strings.
Every batch is checked for its shape, its dimension (the cache's first batch's, and the
stage's), its dtype and its finiteness before it is cached or journaled as usable. A bad
batch that was paid for is counted as paid, written to ``<cache>.quarantine/`` with its
request's tag, rows and the reason, and never stored in the cache: training never sees
it, and a rerun asks the target for those images again (within the budget).
"""

import os
from typing import Optional

import numpy as np

from stolen_jax.errors import UserError


class TargetAnswerError(UserError):
  """The target answered something that is not a feature vector per image."""


def as_numbers(raw, who: str) -> np.ndarray:
  """``raw`` (what a target returned) as a numeric array, or one error naming ``who`` and
  what it returned instead."""
  what = type(raw).__name__
  try:
    array = np.asarray(raw)
  except Exception as e:  # noqa: BLE001  (a ragged list, an object that refuses conversion)
    raise TargetAnswerError(f"{who} returned a {what} that is not an array of numbers "
                            f"({type(e).__name__}: {str(e)[:120]})") from None
  if array.dtype.kind not in "fiu":
    sample = repr(raw)[:80]
    raise TargetAnswerError(f"{who} returned {what} of dtype {array.dtype} ({sample}), not "
                            "numbers: it must return an (N, D) array of floats")
  return array


def call(fn, who: str, *args, context: str = "", consequence: str = "") -> np.ndarray:
  """``fn(*args)`` (a user's function) as numbers: what it raises or returns instead is one
  TargetAnswerError naming ``who`` (``context``: where, ``consequence``: what follows)."""
  try:
    raw = fn(*args)
  except Exception as e:  # noqa: BLE001  (the user's code: its error, named, not ours)
    raise TargetAnswerError(f"{who} raised {type(e).__name__}{context}: {str(e)[:300]}"
                            f"{consequence}") from e
  return as_numbers(raw, who)


def problem(answers: np.ndarray, n: int, dims: tuple = ()) -> Optional[str]:
  """What is wrong with a batch of ``n`` answers (None when nothing is): ``dims`` are the
  (name, dimension) pairs the answers must have (the cache's first batch's, the stage's)."""
  a = np.asarray(answers)
  if a.dtype.kind not in "fiu":
    return f"answers of dtype {a.dtype}"
  if a.ndim != 2 or a.shape[0] != n:
    return f"an answer of shape {a.shape} for {n} images (one vector per image is ({n}, D))"
  for name, dim in dims:
    if dim and a.shape[1] != int(dim):
      return f"{a.shape[1]}-dimensional vectors where {name} are {int(dim)}-dimensional"
  bad = ~np.isfinite(a).all(axis=1)
  if bad.any():
    kinds = [k for k, hit in (("NaN", np.isnan(a).any()), ("±inf", np.isinf(a).any())) if hit]
    return f"{' and '.join(kinds)} for {int(bad.sum())} of {n} images"
  return None


def _directory(cache) -> str:
  return cache.base + ".quarantine"


def quarantine(cache, tag: str, indices: np.ndarray, answers, reason: str) -> str:
  """Keeps a bad (paid) batch apart from ``cache``: ``<cache>.quarantine/<tag>.npz`` with
  its rows, answers and reason. Returns the file's path."""
  from stolen_jax import parallel
  directory = _directory(cache)
  path = os.path.join(directory, f"{tag}.npz")
  if not parallel.is_main():
    return path
  os.makedirs(directory, exist_ok=True)
  a = np.asarray(answers)
  stored = a if a.dtype.kind in "fiub" else np.asarray(repr(answers)[:100000])
  tmp = path + ".tmp.npz"
  with open(tmp, "wb") as f:
    np.savez(f, indices=np.asarray(indices, np.int64), answers=stored,
             reason=np.asarray(reason), tag=np.asarray(tag))
  os.replace(tmp, path)
  return path


def quarantined(cache) -> list[str]:
  """The quarantined batches of ``cache`` (paths)."""
  directory = _directory(cache)
  if not os.path.isdir(directory):
    return []
  return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".npz"))


def quarantine_note(caches) -> str:
  """'. N paid batches the target answered wrongly are kept apart in DIR ...' for budget
  refusals (so a user sees where the missing budget went), or ''."""
  held = [path for cache in caches for path in quarantined(cache)]
  if not held:
    return ""
  return (f". {len(held)} paid batches the target answered wrongly are kept apart in "
          f"{os.path.dirname(held[0])} (each .npz says why); they cannot be used")


def quarantine_cached_rows(cache) -> int:
  """Rows the cache holds as answered whose answers are not finite (cached before answers
  were checked): moved to the quarantine and marked unanswered, so they are asked again.
  Returns how many."""
  from stolen_jax import parallel
  if not parallel.is_main() or cache.feature_dim is None or not cache.answered.any():
    return 0
  rows = np.flatnonzero(cache.answered)
  stored = np.asarray(cache.stored_rows(rows))
  not_finite = ~np.isfinite(stored).all(axis=1)
  bad = rows[not_finite]
  if len(bad):
    quarantine(cache, f"cached-{bad[0]}", bad, stored[not_finite],
               f"not finite ({len(bad)} cached rows, paid before answers were checked)")
    cache.forget(bad)
  return len(bad)
