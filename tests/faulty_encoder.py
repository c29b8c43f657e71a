"""A user's encoder that misbehaves on demand (``MODE``), for ``callable:faulty_encoder:encode``:
NaN for a few images of its second batch, another dimension from its second batch on,
an exception, or strings. Healthy, it is ``user_encoder.encode``."""

import numpy as np

import user_encoder

MODE = {"fault": None, "calls": 0}


def encode(images: np.ndarray):
  MODE["calls"] += 1
  out = user_encoder.encode(images)
  fault, second = MODE["fault"], MODE["calls"] >= 2
  if fault == "nan" and second:
    out[:3] = np.nan
  elif fault == "dim" and second:
    out = np.concatenate([out, out[:, :1]], axis=1)
  elif fault == "raise":
    raise RuntimeError("CUDA out of memory (a stand-in)")
  elif fault == "strings":
    return [["a"] * out.shape[1]] * len(images)
  return out
