"""The attacker's durable cache of paid answers, keyed by surrogate example.

Answers are written to ``<name>.features.npy`` as each batch arrives; only after they are
flushed does the row's checksum go into ``<name>.rows.npy`` (replaced atomically), and a
row counts as answered only while its checksum matches its bytes. So a crash loses at most
the batch in flight, a rerun re-pays nothing already answered, and a damaged file (truncated,
overwritten) is detected row by row: the damaged rows are re-queried, and only they.

The cache is keyed: the images' fingerprint, the target's content fingerprint and the
defense the provider applied. Answers paid under one key are never read under another.

Paid answers are never dropped silently. The service's query log names, per request, the
cache and rows it paid for; so when the row record or the cache's metadata is lost, the
answered rows are rebuilt from the log (the metadata only where the directory itself is
keyed, as a query stage's is). Each batch's answers are journaled (``<name>.pending.npz``)
before the request is logged as paid and cleared once stored, so a kill between paying and
storing is recovered on the next run instead of paid twice.
"""

import json
import os

import numpy as np
from absl import logging

from stolen_jax.eaas.rows import (_describe, _ranges, fingerprint,  # noqa: F401  (eaas.cache.fingerprint)
                                  read_features, read_header, row_checksums)
from stolen_jax.errors import DataError


class FeatureCache:
  """Features of N examples in ``directory/<name>.*``, keyed by ``key``.

  ``key``: a dict naming what the answers depend on (``images`` fingerprint, ``target``
  fingerprint, ``defense``); a string is taken as the images' fingerprint alone.
  ``keyed_directory``: ``directory`` itself is keyed by what ``key`` says (a stage
  directory), so lost metadata can be rebuilt with ``key``; elsewhere it is an error.
  """

  def __init__(self, directory: str, name: str, num_examples: int, key,
               keyed_directory: bool = False):
    from stolen_jax import parallel
    self.base = os.path.join(directory, name)
    self.name = name
    self.num_examples = num_examples
    self.keyed_directory = keyed_directory
    self.rows_lost = False  # The row record was missing or unreadable: rebuild from the log.
    self._lost_features = None
    self.key = {"images": key} if isinstance(key, str) else dict(key)
    self._features = None
    self.feature_dim = None
    self.checksums = np.zeros(num_examples, np.uint64)
    self.damaged_rows = np.zeros(0, np.int64)
    error = None
    if parallel.is_main():  # Only process 0 reads and writes the cache; the rest follow it.
      try:
        self._open(directory)
      except DataError as e:
        error = str(e)
    if parallel.agree(error):
      raise DataError(parallel.agree(error))
    self._agree()

  def _agree(self):
    """Every process takes process 0's view of the cache (dimension, answered rows)."""
    from stolen_jax import parallel
    if parallel.multiprocess():
      self.feature_dim = parallel.agree(self.feature_dim)
      # Checksums as two uint32 halves (broadcasts carry 32-bit integers without x64).
      lo = parallel.agree((self.checksums & np.uint64(0xFFFFFFFF)).astype(np.uint32))
      hi = parallel.agree((self.checksums >> np.uint64(32)).astype(np.uint32))
      self.checksums = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)

  def _features_header(self):
    """(rows, dim) of an existing features file, or None."""
    path = self.base + ".features.npy"
    try:
      with open(path, "rb") as f:
        shape, _, _ = read_header(f)
      return tuple(shape) if len(shape) == 2 else None
    except Exception:
      return None

  def _rebuild_meta(self, why: str):
    """Lost or damaged metadata beside a features file: rebuilt where the directory is keyed
    (so the key is this run's), else an error before anything is paid again."""
    header = self._features_header()
    features_path = self.base + ".features.npy"
    if header is None:
      logging.warning("query cache %s: its record is %s and no answers are stored; starting "
                      "it afresh", self.base + ".json", why)
      return False
    if not self.keyed_directory or header[0] != self.num_examples:
      raise DataError(
          f"query cache {self.base}: its record ({self.base}.json) is {why}, so the answers in "
          f"{features_path} cannot be matched to this run's target, images and defense. Restore "
          f"the record, or move {features_path} aside to query (and pay for) them again")
    logging.warning("query cache %s: its record is %s; rebuilt from this stage's key (the "
                    "directory is keyed by it) and the features file (dim %d)", self.base, why,
                    header[1])
    self.feature_dim = int(header[1])
    self._write_meta()
    return True

  def _write_meta(self):
    tmp = self.base + ".json.tmp"
    with open(tmp, "w") as f:
      json.dump({"key": self.key, "num_examples": self.num_examples,
                 "feature_dim": self.feature_dim}, f)
    os.replace(tmp, self.base + ".json")

  def _open(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    meta_path = self.base + ".json"
    if not os.path.exists(meta_path):
      if os.path.exists(self.base + ".features.npy") and self._rebuild_meta("missing"):
        self._open_existing()
      return
    try:
      with open(meta_path) as f:
        meta = json.load(f)
      if not isinstance(meta, dict) or "num_examples" not in meta or "feature_dim" not in meta:
        raise ValueError("incomplete")
    except ValueError:
      meta = None
    if meta is None:
      if self._rebuild_meta("damaged"):
        self._open_existing()
      return
    old_key = meta.get("key", {"images": meta.get("fingerprint")})
    if old_key != self.key or meta["num_examples"] != self.num_examples:
      what = [k for k in sorted(set(old_key) | set(self.key)) if old_key.get(k) != self.key.get(k)]
      raise DataError(
          f"the query cache {self.base}.* holds answers for other {', '.join(what) or 'sizes'} "
          f"({_describe(old_key)}; this run: {_describe(self.key)}); its answers are not valid "
          "here. Use another workdir, or delete the cache (its answers were paid for)")
    self.feature_dim = meta["feature_dim"]
    self._open_existing()

  def _open_existing(self):
    """Reads the features file as far as it is intact and keeps only rows whose checksum
    matches: truncation or overwritten bytes mark those rows unanswered."""
    path = self.base + ".features.npy"
    rows_path = self.base + ".rows.npy"
    stored = np.zeros(self.num_examples, np.uint64)
    if not os.path.exists(rows_path):
      self.rows_lost = True
    else:
      try:
        stored = np.load(rows_path)
        if stored.shape != (self.num_examples,):
          raise ValueError(f"shape {stored.shape}")
      except Exception as e:
        logging.warning("query cache %s: row record unreadable (%s); the answered rows will be "
                        "rebuilt from the query log", rows_path, e)
        stored = np.zeros(self.num_examples, np.uint64)
        self.rows_lost = True
    features = self._read_features(path)
    if self.rows_lost:  # Kept as they are until the log says which rows were paid.
      self._lost_features = features
    answered_before = stored != 0
    actual = row_checksums(features)
    ok = answered_before & (actual == stored)
    self.damaged_rows = np.flatnonzero(answered_before & ~ok)
    if len(self.damaged_rows):
      logging.warning("query cache %s: %d answered rows are damaged (rows %s); they will be "
                      "queried again (%d queries), every other answer is kept", self.base,
                      len(self.damaged_rows), _ranges(self.damaged_rows), len(self.damaged_rows))
    self.checksums = np.where(ok, stored, np.uint64(0)).astype(np.uint64)
    # Rewrite the file whole at its full size, so later row writes land in a sound file.
    self._features = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.float32,
                                               shape=(self.num_examples, self.feature_dim))
    # With the row record lost, the bytes are kept as they are until ``reconcile`` learns
    # from the query log which rows were paid (a crash before then loses nothing).
    self._features[:] = features if self.rows_lost else np.where(ok[:, None], features, 0)
    self._features.flush()
    del self._features
    os.replace(path + ".tmp.npy", path)
    self._features = np.load(path, mmap_mode="r+")
    if not self.rows_lost:
      self._save_rows()

  def _read_features(self, path: str) -> np.ndarray:
    return read_features(path, self.num_examples, self.feature_dim)

  # Journal of the batch in flight: written before the request is logged as paid.
  def _pending_path(self) -> str:
    return self.base + ".pending.npz"

  def journal(self, tag: str, indices: np.ndarray, answers: np.ndarray) -> None:
    """Persists a batch's answers (atomically) before its request is logged as paid."""
    from stolen_jax import parallel
    if not parallel.is_main():
      return
    tmp = self.base + ".pending.tmp.npz"
    with open(tmp, "wb") as f:
      np.savez(f, tag=np.asarray(tag), indices=np.asarray(indices, np.int64),
               answers=np.asarray(answers, np.float32))
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self._pending_path())

  def clear_journal(self) -> None:
    from stolen_jax import parallel
    if parallel.is_main() and os.path.exists(self._pending_path()):
      os.remove(self._pending_path())

  def reconcile(self, log) -> None:
    """Brings the cache in line with the service's query log (``service.QueryLog``): a
    journaled batch that the log says was paid is stored (else dropped: it was never paid),
    and a lost row record is rebuilt from the rows the log says were paid."""
    from stolen_jax import parallel
    if parallel.is_main():
      pending = self._pending_path()
      if os.path.exists(pending) and log is not None:
        try:
          with np.load(pending, allow_pickle=False) as f:
            tag, idx, answers = str(f["tag"]), f["indices"], f["answers"]
        except Exception:
          tag = None
        if tag is not None and tag in log.tags():
          logging.warning("query cache %s: the batch paid just before an interruption (%d rows) "
                          "is stored from its journal, not paid again", self.base, len(idx))
          self.store(idx, answers)
        self.clear_journal()
      if self.rows_lost and self._features is not None:
        paid = log.rows(self.name) if log is not None else None
        features = self._lost_features
        if paid is None:
          nonzero = int(np.any(features != 0, axis=1).sum())
          if nonzero:
            raise DataError(
                f"query cache {self.base}: its row record ({self.base}.rows.npy) is lost and the "
                f"query log does not say which rows were paid; {nonzero} rows of "
                f"{self.base}.features.npy hold answers. Restore the record, or move the "
                "features file aside to query (and pay for) them again")
        else:
          paid = paid[(paid >= 0) & (paid < self.num_examples)]
          ok = np.zeros(self.num_examples, bool)
          ok[paid] = np.all(np.isfinite(features[paid]), axis=1)
          self._features[:] = np.where(ok[:, None], features, 0)
          self._features.flush()
          self.checksums = np.where(ok, row_checksums(features), np.uint64(0)).astype(np.uint64)
          self._save_rows()
          logging.warning("query cache %s: its row record was lost; %d paid answers recovered "
                          "from the query log", self.base, int(ok.sum()))
        self.rows_lost = False
        self._lost_features = None
    self._agree()

  @property
  def answered(self) -> np.ndarray:
    """Boolean mask of the examples whose answers are stored and intact."""
    return self.checksums != 0

  def _save_rows(self):
    tmp = self.base + ".rows.tmp.npy"
    np.save(tmp, self.checksums)
    os.replace(tmp, self.base + ".rows.npy")  # Atomic: never a half-written record.

  def _create(self, feature_dim: int):
    self.feature_dim = feature_dim
    self._features = np.lib.format.open_memmap(self.base + ".features.npy", mode="w+",
                                               dtype=np.float32, shape=(self.num_examples, feature_dim))
    self._save_rows()
    self._write_meta()

  def store(self, indices: np.ndarray, answers: np.ndarray) -> None:
    """Persists answers for ``indices`` (features first, then their checksums); in a
    multi-process job process 0 persists and the others track which rows are answered."""
    from stolen_jax import parallel
    answers = np.asarray(answers, np.float32)
    if not parallel.is_main():
      self.feature_dim = answers.shape[1]
      self.checksums[indices] = row_checksums(answers)
      return
    if self._features is None:
      self._create(answers.shape[1])
    if answers.shape != (len(indices), self.feature_dim):
      raise DataError(f"query cache {self.base}: answers of shape {answers.shape} for "
                      f"{len(indices)} rows of dim {self.feature_dim}")
    self._features[indices] = answers
    self._features.flush()
    self.checksums[indices] = row_checksums(answers)
    self._save_rows()

  def stored_rows(self, rows: np.ndarray) -> np.ndarray:
    """The stored answers of ``rows`` (process 0)."""
    return np.array(self._features[rows])

  def forget(self, rows: np.ndarray) -> None:
    """Marks ``rows`` unanswered (their answers are not to be used; they are asked again)."""
    self.checksums[rows] = 0
    self._save_rows()

  @property
  def complete(self) -> bool:
    return bool(self.answered.all())

  def features(self) -> np.ndarray:
    """All N answers (process 0's, on every process)."""
    from stolen_jax import parallel
    if not self.complete:
      raise DataError(f"query cache {self.base} is incomplete "
                      f"({int(self.answered.sum())}/{self.num_examples} answered)")
    if not parallel.is_main():
      return parallel.agree(np.zeros((self.num_examples, self.feature_dim), np.float32))
    return parallel.agree(np.array(self._features))
