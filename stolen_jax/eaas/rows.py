"""Rows of paid answers: content fingerprints, per-row checksums, row ranges as text, and
reading a features file as far as its bytes go."""

import hashlib

import numpy as np


def fingerprint(images: np.ndarray) -> str:
  """A short content hash of a uint8 image array."""
  h = hashlib.sha256()
  h.update(str(images.shape).encode())
  h.update(np.ascontiguousarray(images).tobytes())
  return h.hexdigest()[:16]


def read_header(f):
  """(shape, fortran_order, dtype) of an open ``.npy`` file, left at its data."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(f)
  return np.lib.format.read_array_header_2_0(f)


def row_checksums(rows: np.ndarray) -> np.ndarray:
  """One non-zero uint64 checksum per row (0 is reserved for 'not answered')."""
  rows = np.ascontiguousarray(rows, np.float32)
  out = np.empty(len(rows), np.uint64)
  for i, row in enumerate(rows):
    out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") | 1
  return out


def _describe(key: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in sorted(key.items()))


def format_rows(indices) -> str:
  """'0-4, 9' for [0,1,2,3,4,9] (every range; ``parse_rows`` reads it back)."""
  return _ranges(np.asarray(indices), limit=None)


def _ranges(indices: np.ndarray, limit: int | None = 8) -> str:
  """'0-4, 9' for [0,1,2,3,4,9]."""
  parts, start = [], None
  for i, x in enumerate(indices):
    if start is None:
      start = x
    if i + 1 == len(indices) or indices[i + 1] != x + 1:
      parts.append(f"{start}" if start == x else f"{start}-{x}")
      start = None
  if limit is None:
    return ", ".join(parts)
  return ", ".join(parts[:limit]) + (" ..." if len(parts) > limit else "")


def parse_rows(text: str) -> np.ndarray:
  """'0-4, 9' -> [0, 1, 2, 3, 4, 9] (the inverse of ``format_rows``)."""
  out = []
  for part in str(text).split(","):
    part = part.strip()
    if not part:
      continue
    lo, _, hi = part.partition("-")
    out.extend(range(int(lo), int(hi or lo) + 1))
  return np.asarray(out, np.int64)


def read_features(path: str, num_examples: int, feature_dim: int) -> np.ndarray:
  """A ``.npy`` features file's rows as far as its bytes go (zeros past a truncation)."""
  import os
  features = np.zeros((num_examples, feature_dim), np.float32)
  if os.path.exists(path):
    with open(path, "rb") as f:
      try:
        read_header(f)
        data = f.read()
      except Exception:
        data = b""
    row_bytes = 4 * feature_dim
    intact = min(len(data) // row_bytes, num_examples)
    features[:intact] = np.frombuffer(data[:intact * row_bytes], np.float32).reshape(
        intact, feature_dim)
  return features
