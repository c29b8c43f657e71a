"""Labels as the probes need them: one whole number >= 0 per image."""

from typing import Optional

import numpy as np

from stolen_jax.errors import DataError


def check_labels(labels, num_images: int, name: str) -> Optional[np.ndarray]:
  """Labels as int32 (N,), or a DataError: one label per image, whole numbers >= 0 (a
  fractional or negative label is a broken file, never cast into a class)."""
  if labels is None:
    return None
  labels = np.asarray(labels)
  if labels.ndim > 1 and labels.size == len(labels):
    labels = labels.reshape(-1)  # (N, 1) columns, as some distributions store them.
  if labels.ndim != 1:
    raise DataError(f"{name}: labels of shape {labels.shape}; expected one integer per image")
  if len(labels) != num_images:
    raise DataError(f"{name}: {len(labels)} labels for {num_images} images; every image needs "
                    "exactly one label")
  if labels.dtype.kind not in "iub":
    if labels.dtype.kind != "f":
      raise DataError(f"{name}: labels of dtype {labels.dtype}; expected integers")
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    if bad.any():
      raise DataError(f"{name}: {int(bad.sum())} labels are not whole numbers (e.g. "
                      f"{labels[bad][0]!r} at index {int(np.flatnonzero(bad)[0])})")
  if len(labels) and labels.min() < 0:
    raise DataError(f"{name}: {int((labels < 0).sum())} labels are negative (e.g. "
                    f"{labels.min()!r}); classes are numbered from 0")
  if len(labels) and labels.max() >= 2 ** 31:
    raise DataError(f"{name}: label {labels.max()!r} is too large for a class index")
  return labels.astype(np.int32)
