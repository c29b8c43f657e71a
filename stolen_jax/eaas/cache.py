"""The attacker's durable cache of paid answers, keyed by surrogate example.

Answers are written to a memory-mapped ``.npy`` as each batch arrives and the example is
marked answered only after its features are flushed, so a crash loses at most the batch in
flight and a rerun re-pays nothing already answered. A fingerprint of the images guards
against reusing a cache for a different surrogate set.
"""

import hashlib
import json
import os

import numpy as np
from absl import logging

from stolen_jax.errors import DataError


def fingerprint(images: np.ndarray) -> str:
  """A short content hash of a uint8 image array."""
  h = hashlib.sha256()
  h.update(str(images.shape).encode())
  h.update(np.ascontiguousarray(images).tobytes())
  return h.hexdigest()[:16]


class FeatureCache:
  """Features of N examples in ``directory/<name>.features.npy``, with an answered mask."""

  def __init__(self, directory: str, name: str, num_examples: int, images_fingerprint: str):
    os.makedirs(directory, exist_ok=True)
    self.base = os.path.join(directory, name)
    self.num_examples = num_examples
    self.fingerprint = images_fingerprint
    self._features = None
    meta_path = self.base + ".json"
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        meta = json.load(f)
      if meta["fingerprint"] != images_fingerprint or meta["num_examples"] != num_examples:
        raise DataError(f"the query cache {self.base}.* was made for a different surrogate set "
                        f"({meta}); use another workdir or delete it (its answers are paid for)")
      self.feature_dim = meta["feature_dim"]
      self._features = np.load(self.base + ".features.npy", mmap_mode="r+")
      self.answered = np.load(self.base + ".answered.npy")
    else:
      self.feature_dim = None
      self.answered = np.zeros(num_examples, bool)

  def _create(self, feature_dim: int):
    self.feature_dim = feature_dim
    self._features = np.lib.format.open_memmap(self.base + ".features.npy", mode="w+",
                                               dtype=np.float32, shape=(self.num_examples, feature_dim))
    np.save(self.base + ".answered.npy", self.answered)
    with open(self.base + ".json", "w") as f:
      json.dump({"fingerprint": self.fingerprint, "num_examples": self.num_examples,
                 "feature_dim": feature_dim}, f)

  def store(self, indices: np.ndarray, answers: np.ndarray) -> None:
    """Persists answers for ``indices`` (features first, then the answered mask)."""
    if self._features is None:
      self._create(answers.shape[1])
    self._features[indices] = answers
    self._features.flush()
    self.answered[indices] = True
    tmp = self.base + ".answered.tmp.npy"
    np.save(tmp, self.answered)
    os.replace(tmp, self.base + ".answered.npy")  # Atomic: never a half-written mask.

  @property
  def complete(self) -> bool:
    return bool(self.answered.all())

  def features(self) -> np.ndarray:
    if not self.complete:
      raise DataError(f"query cache {self.base} is incomplete "
                      f"({int(self.answered.sum())}/{self.num_examples} answered)")
    return np.asarray(self._features)


def query_with_cache(service, images: np.ndarray, cache: FeatureCache, batch_size: int = 256) -> np.ndarray:
  """Answers for every image: cached ones are free, the rest are queried batch by batch and
  stored as they arrive. Returns the (N, D) features."""
  missing = np.flatnonzero(~cache.answered)
  if len(missing):
    logging.info("querying the service for %d of %d examples (%d cached)", len(missing),
                 len(images), len(images) - len(missing))
  for start in range(0, len(missing), batch_size):
    idx = missing[start:start + batch_size]
    cache.store(idx, service.query(images[idx]))
  return cache.features()
