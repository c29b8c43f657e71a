"""B4B (Dubiński et al., "Bucks for Buckets", NeurIPS 2023): per-account noise that grows
with how much of the embedding space the account's queries cover.

Each answer is hashed into one of 2^bits buckets by random hyperplanes through the origin
(locality-sensitive hashing: sign patterns of projections). An account's *coverage* is the
fraction of buckets its answers have occupied so far. A normal customer's queries come from
one task and occupy few buckets; a stealer's surrogate set (meant to cover the encoder's
input space) occupies many. The answer gets Gaussian noise of standard deviation
``scale · rms(f) · min(1, coverage / saturation)^power`` — nothing at first, growing with
coverage — so the honest customer is barely affected and the stealer's answers degrade.

The paper also transforms each account's embeddings with a per-account secret map (against
sybil accounts pooling answers); that part is not reproduced here.
"""

import dataclasses
import hashlib
import threading

import numpy as np

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError


@dataclasses.dataclass
class B4BConfig:
  bits: int = 12  # 4,096 buckets.
  scale: float = 1.0  # Noise std at saturation, relative to the answer's RMS feature value.
  saturation: float = 0.25  # Coverage at which the noise reaches ``scale``.
  power: float = 1.0
  seed: int = 0


class B4B:
  """Tracks each account's occupied buckets and noises its answers accordingly."""

  def __init__(self, feature_dim: int, cfg: B4BConfig = B4BConfig()):
    self.cfg = cfg
    rng = np.random.default_rng(cfg.seed)
    self.planes = rng.normal(size=(feature_dim, cfg.bits)).astype(np.float32)
    self._occupied: dict[str, set] = {}
    self._lock = threading.Lock()

  def buckets(self, features: np.ndarray) -> np.ndarray:
    bits = (np.asarray(features, np.float32) @ self.planes) > 0
    return bits.astype(np.int64) @ (1 << np.arange(self.cfg.bits, dtype=np.int64))

  def coverage(self, account: str) -> float:
    return len(self._occupied.get(account, ())) / float(2 ** self.cfg.bits)

  def noise_std(self, coverage: float) -> float:
    c = self.cfg
    return c.scale * min(1.0, coverage / c.saturation) ** c.power

  def __call__(self, account: str, features: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The answers for ``account``: coverage updated with these queries, then noised."""
    features = np.asarray(features, np.float32)
    with self._lock:
      seen = self._occupied.setdefault(account, set())
      seen.update(int(b) for b in self.buckets(features))
      coverage = len(seen) / float(2 ** self.cfg.bits)
    std = self.noise_std(coverage) * float(np.sqrt(np.mean(features ** 2)) + 1e-12)
    if std == 0:
      return features
    out = np.empty_like(features)
    for i, (f, im) in enumerate(zip(features, images)):  # Per image and account: reproducible.
      seed = int.from_bytes(hashlib.blake2b(account.encode() + np.ascontiguousarray(im).tobytes(),
                                            digest_size=8).digest(), "little")
      out[i] = f + std * np.random.default_rng(seed).normal(size=f.shape).astype(np.float32)
    return out


def _settings(cfg) -> dict:
  b = cfg.b4b
  return {"name": "b4b", "bits": int(b.bits), "scale": float(b.scale),
          "saturation": float(b.saturation), "power": float(b.power), "seed": int(cfg.seed)}


def _validate(cfg, feature_dim=None) -> None:
  b = cfg.b4b
  if not isinstance(b.bits, int) or not 1 <= b.bits <= 24:
    raise ConfigError(f"defense.b4b.bits={b.bits!r} must be an integer in [1, 24]")
  for key in ("scale", "saturation", "power"):
    if not np.isfinite(b[key]) or b[key] < 0 or (key == "saturation" and b[key] == 0):
      raise ConfigError(f"defense.b4b.{key}={b[key]} must be a finite number "
                        f"{'> 0' if key == 'saturation' else '>= 0'}")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  if feature_dim is None:
    raise ConfigError("defense 'b4b' needs the target's feature dimension")
  tracker = B4B(feature_dim, B4BConfig(bits=s["bits"], scale=s["scale"],
                                       saturation=s["saturation"], power=s["power"],
                                       seed=s["seed"]))
  return Defense("b4b", s, lambda f, images, account: tracker(account, f, images),
                 per_account=True)


KIND = Kind("b4b", "Dubiński et al., Bucks for Buckets, NeurIPS 2023", _settings, _validate,
            _make)
