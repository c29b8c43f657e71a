"""Perturbation-aware stealing (``steal.recover=auto``): recognise the perturbation the API
applies from its answers' statistics, then undo what can be undone before training
(BESA-style, arXiv 2506.04556: detection, then recovery of clean answers).

Recognition, in order (each test reads the answers alone, except noise):

* ``b4b_binary`` — every answer is 0 or 1 (B4B's binary transformation; nothing to undo);
* ``b4b_pad``    — some dimensions are the same in every answer (B4B's shuffle-and-pad adds
                   them): they carry nothing and are dropped; the rest is then tested again;
* ``topk``       — no answer has more than k non-zeros and most have exactly k (k ≤ 3d/4).
                   Nothing is undone: what was dropped is smaller than what was kept, and
                   imputing it (iterated low-rank reconstruction within that bound) lowered
                   the cosine to the clean answers on a synthetic ReLU target (0.953 → 0.935);
* ``round``      — every value is a multiple of 10^−m: quantisation noise of known variance
                   10^−2m / 12, removed by the linear MMSE (Wiener) filter below;
* ``noise``      — the answers' covariance has a flatter tail than the attacker's own clean
                   encoder (its ``shadow``: the features of the encoder it pre-trained on
                   its surrogate set, ``steal.variant=pretrain_encoder``, no query): the
                   excess tail is the noise variance σ², removed by the Wiener filter
                   x̂ = μ + C (C + σ²I)⁻¹ (y − μ), C = Σ_y − σ²I made positive semi-definite;
* ``none``       — otherwise.

Every decision and its statistics go into the steal's summary (``recover``).
"""

import numpy as np

NOISE_TAIL_RATIO = 2.0  # The answers' tail must exceed the shadow's by this factor.


def _spectrum(features: np.ndarray) -> tuple[float, float]:
  """(the median of the lower half of the covariance spectrum over the spectrum's mean,
  that mean)."""
  f = np.asarray(features, np.float64)
  eig = np.clip(np.linalg.eigvalsh(np.cov(f, rowvar=False)), 0, None)
  mean = float(eig.mean())
  return float(np.median(np.sort(eig)[: max(1, len(eig) // 2)]) / max(mean, 1e-30)), mean


def decimals_of(answers: np.ndarray, max_decimals: int = 6):
  """The smallest m for which every value is a multiple of 10^−m, or None."""
  a = np.asarray(answers, np.float64)
  largest = float(np.max(np.abs(a))) if a.size else 0.0
  for m in range(max_decimals + 1):
    if largest * 10.0 ** m > 2 ** 22:  # Beyond float32's resolution every value "is" a multiple.
      return None
    scaled = a * 10.0 ** m
    if np.all(np.abs(scaled - np.round(scaled)) < 1e-3):
      return m
  return None


def detect(answers: np.ndarray, shadow: np.ndarray = None) -> dict:
  """{'kind': ..., and its parameters and statistics}: which perturbation the answers show."""
  a = np.asarray(answers, np.float32)
  if np.all((a == 0) | (a == 1)):
    return {"kind": "b4b_binary"}
  constant = np.where(np.ptp(a, axis=0) == 0)[0]
  if len(constant) and len(constant) < a.shape[1] and len(a) > 1:
    rest = detect(np.delete(a, constant, axis=1), shadow)
    return {"kind": "b4b_pad", "padding": constant.tolist(), "then": rest}
  nonzero = (a != 0).sum(axis=1)
  k = int(nonzero.max())
  # A hard ceiling that most answers reach (features that are often 0 themselves, as ReLU
  # features are, leave fewer than k non-zeros in some answers, never more).
  if k <= 0.75 * a.shape[1] and np.mean(nonzero == k) >= 0.5:
    return {"kind": "topk", "k": k}
  m = decimals_of(a)
  if m is not None:
    return {"kind": "round", "decimals": m}
  if shadow is not None:
    (tail, eig_mean), (reference, _) = _spectrum(a), _spectrum(shadow)
    if tail > NOISE_TAIL_RATIO * reference:
      variance = max((tail - reference) * eig_mean, 0.0)
      return {"kind": "noise", "variance": variance, "tail": tail, "shadow_tail": reference}
    return {"kind": "none", "tail": tail, "shadow_tail": reference}
  return {"kind": "none"}


def wiener(answers: np.ndarray, variance: float) -> np.ndarray:
  """Linear MMSE estimate of the clean answers under additive noise of ``variance``."""
  y = np.asarray(answers, np.float64)
  mu = y.mean(axis=0)
  eig, vec = np.linalg.eigh(np.cov(y, rowvar=False))
  clean = np.clip(eig - variance, 0, None)
  gain = (vec * (clean / np.maximum(clean + variance, 1e-30))) @ vec.T
  return (mu + (y - mu) @ gain).astype(np.float32)


def recover(answers: np.ndarray, found: dict) -> np.ndarray:
  """The answers with the recognised perturbation undone as far as it can be."""
  kind = found["kind"]
  if kind == "b4b_pad":
    kept = np.delete(np.asarray(answers, np.float32), found["padding"], axis=1)
    return recover(kept, found["then"])
  if kind == "round":
    return wiener(answers, 10.0 ** (-2 * found["decimals"]) / 12.0)
  if kind == "noise":
    return wiener(answers, found["variance"])
  return np.asarray(answers, np.float32)
