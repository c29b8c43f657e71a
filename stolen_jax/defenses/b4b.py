"""B4B as published (Dubiński et al., "Bucks for Buckets (B4B): Active Defenses Against
Stealing Encoders", NeurIPS 2023; stapaw/b4b-active-encoder-defense).

**Coverage.** Each answer is hashed by ``projections`` independent sets of ``bits`` random
hyperplanes through the origin (locality-sensitive hashing: sign patterns); an account's
coverage is the mean over the projections of the percentage of the 2^bits buckets its
answers have occupied so far (their defaults: 20 projections of 12 bits).

**Noise.** The answer gets Gaussian noise of standard deviation

    σ(c) = max(0, λ · (exp(ln(α / λ) · c / β) − 1))

for the account's coverage c in percent — their calibration (α = 0.8, β = 80, λ = 1e-6):
≈ 0 for the narrow coverage of a customer's task, α when the coverage reaches β percent,
in the units of the features themselves.

**Per-account transformations** (against sybils pooling answers): each account's answers
are mapped by its own secret transformation — ``affine`` (per-dimension scale and shift,
each uniform in [−1, 1]), ``shuffle_pad`` (``pad_ratio``·d extra random dimensions, fixed per
account, then a secret permutation of all), ``affine_shuffle_pad`` (both, their default) or
``binary`` (``binary_ratio``·d random hyperplanes through random points of the unit cube;
each answer becomes the bits of which side it lies on) — or ``none``. A downstream task of
one account is unaffected by an invertible transformation; answers of two accounts live in
unrelated spaces. An account's secret is ``secret_of(account)``: on our HTTP server a random
secret kept in the ledger per key (stable across restarts), in process a hash of the
defense's seed and the account's name.
"""

import dataclasses
import hashlib
import threading
from typing import Callable, Optional

import numpy as np

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError

TRANSFORMS = ("none", "affine", "shuffle_pad", "affine_shuffle_pad", "binary")


@dataclasses.dataclass
class B4BConfig:
  projections: int = 20
  bits: int = 12
  alpha: float = 0.8
  beta: float = 80.0
  lam: float = 1e-6
  transform: str = "affine_shuffle_pad"
  pad_ratio: float = 1.0
  binary_ratio: float = 1.0
  seed: int = 0


def noise_std(coverage_percent: float, alpha: float, beta: float, lam: float) -> float:
  """σ(c) = max(0, λ·(exp(ln(α/λ)·c/β) − 1)) for a coverage c in percent."""
  return max(0.0, lam * (float(np.exp(np.log(alpha / lam) * coverage_percent / beta)) - 1.0))


def _rng(secret: bytes, purpose: str) -> np.random.Generator:
  seed = int.from_bytes(hashlib.blake2b(secret + purpose.encode(), digest_size=8).digest(), "little")
  return np.random.default_rng(seed)


def _padding(dim: int, pad_ratio: float) -> int:
  return int(round(dim * pad_ratio))


def _hyperplanes(dim: int, binary_ratio: float) -> int:
  return max(1, int(round(dim * binary_ratio)))


def transformed_dim(kind: str, dim: int, pad_ratio: float = 1.0,
                    binary_ratio: float = 1.0) -> int:
  """The dimension of answers of ``dim`` after a transformation of ``kind``."""
  if kind == "binary":
    return _hyperplanes(dim, binary_ratio)
  if kind in ("shuffle_pad", "affine_shuffle_pad"):
    return dim + _padding(dim, pad_ratio)
  return dim


class Transformation:
  """One account's secret map of answers (``kind`` of ``TRANSFORMS``)."""

  def __init__(self, kind: str, dim: int, secret: bytes, pad_ratio: float = 1.0,
               binary_ratio: float = 1.0):
    self.kind = kind
    if kind in ("affine", "affine_shuffle_pad"):
      r = _rng(secret, "affine")
      self.scale = r.uniform(-1, 1, dim).astype(np.float32)
      self.shift = r.uniform(-1, 1, dim).astype(np.float32)
    if kind in ("shuffle_pad", "affine_shuffle_pad"):
      r = _rng(secret, "shuffle_pad")
      pad = _padding(dim, pad_ratio)
      self.padding = r.normal(size=pad).astype(np.float32)
      self.order = r.permutation(dim + pad)
    if kind == "binary":
      r = _rng(secret, "binary")
      self.normals = r.normal(size=(dim, _hyperplanes(dim, binary_ratio))).astype(np.float32)
      self.offsets = (r.uniform(0, 1, (dim,)) @ self.normals).astype(np.float32)
    self.out_dim = transformed_dim(kind, dim, pad_ratio, binary_ratio)

  def __call__(self, f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float32)
    if self.kind == "binary":
      return (f @ self.normals > self.offsets).astype(np.float32)
    if self.kind in ("affine", "affine_shuffle_pad"):
      f = f * self.scale + self.shift
    if self.kind in ("shuffle_pad", "affine_shuffle_pad"):
      f = np.concatenate([f, np.broadcast_to(self.padding, (len(f), len(self.padding)))], 1)
      f = f[:, self.order]
    return f


class B4B:
  """Tracks each account's occupied buckets, noises its answers accordingly and maps them
  with its own secret transformation."""

  def __init__(self, feature_dim: int, cfg: B4BConfig = B4BConfig(),
               secret_of: Optional[Callable[[str], bytes]] = None):
    self.cfg = cfg
    self.feature_dim = feature_dim
    rng = np.random.default_rng(cfg.seed)
    self.planes = rng.normal(size=(cfg.projections, feature_dim, cfg.bits)).astype(np.float32)
    self._secret_of = secret_of or (lambda account: f"{cfg.seed}:{account}".encode())
    self._occupied: dict[str, list] = {}
    self._transforms: dict[str, Transformation] = {}
    self._lock = threading.Lock()

  @property
  def out_dim(self) -> int:
    """The dimension of the answers (the transformation's)."""
    return transformed_dim(self.cfg.transform, self.feature_dim, self.cfg.pad_ratio,
                           self.cfg.binary_ratio)

  def buckets(self, features: np.ndarray) -> np.ndarray:
    """(projections, N) bucket ids of each answer under each projection."""
    bits = np.einsum("nd,pdb->pnb", np.asarray(features, np.float32), self.planes) > 0
    return bits.astype(np.int64) @ (1 << np.arange(self.cfg.bits, dtype=np.int64))

  def coverage(self, account: str) -> float:
    """The account's coverage in percent (mean over the projections)."""
    occupied = self._occupied.get(account)
    if not occupied:
      return 0.0
    return float(np.mean([100.0 * len(s) / 2 ** self.cfg.bits for s in occupied]))

  def transformation(self, account: str) -> Transformation:
    """The account's secret transformation (made once from its secret)."""
    with self._lock:
      if account not in self._transforms:
        self._transforms[account] = Transformation(
            self.cfg.transform, self.feature_dim, self._secret_of(account), self.cfg.pad_ratio,
            self.cfg.binary_ratio)
      return self._transforms[account]

  def __call__(self, account: str, features: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The answers for ``account``: coverage updated with these queries, noised, mapped."""
    features = np.asarray(features, np.float32)
    with self._lock:
      occupied = self._occupied.setdefault(account, [set() for _ in range(self.cfg.projections)])
      for seen, ids in zip(occupied, self.buckets(features)):
        seen.update(ids.tolist())
    c = self.cfg
    std = noise_std(self.coverage(account), c.alpha, c.beta, c.lam)
    out = features
    if std > 0:
      out = np.empty_like(features)
      for i, (f, im) in enumerate(zip(features, images)):  # Per image and account: reproducible.
        seed = int.from_bytes(hashlib.blake2b(account.encode() + np.ascontiguousarray(im).tobytes(),
                                              digest_size=8).digest(), "little")
        out[i] = f + std * np.random.default_rng(seed).normal(size=f.shape).astype(np.float32)
    return self.transformation(account)(out)


def config_of(b, seed: int) -> B4BConfig:
  """A ``B4BConfig`` from a ``b4b`` config block."""
  return B4BConfig(projections=int(b.projections), bits=int(b.bits), alpha=float(b.alpha),
                   beta=float(b.beta), lam=float(b.lam), transform=str(b.transform),
                   pad_ratio=float(b.pad_ratio), binary_ratio=float(b.binary_ratio), seed=int(seed))


def _settings(cfg) -> dict:
  return {"name": "b4b", **{k: v for k, v in dataclasses.asdict(config_of(cfg.b4b, cfg.seed)).items()}}


def validate_block(b, where: str) -> None:
  """One ConfigError for a bad B4B parameter (``where``: 'defense.b4b' or 'serve.b4b')."""
  if not isinstance(b.bits, int) or not 1 <= b.bits <= 24:
    raise ConfigError(f"{where}.bits={b.bits!r} must be an integer in [1, 24]")
  if not isinstance(b.projections, int) or not 1 <= b.projections <= 256:
    raise ConfigError(f"{where}.projections={b.projections!r} must be an integer in [1, 256]")
  for key in ("alpha", "beta", "lam"):
    if not np.isfinite(b[key]) or b[key] <= 0:
      raise ConfigError(f"{where}.{key}={b[key]} must be a finite number > 0")
  if b.alpha <= b.lam:
    raise ConfigError(f"{where}.alpha={b.alpha} must exceed {where}.lam={b.lam}")
  if b.transform not in TRANSFORMS:
    raise ConfigError(f"{where}.transform={b.transform!r}; valid choices: {', '.join(TRANSFORMS)}")
  for key in ("pad_ratio", "binary_ratio"):
    if not np.isfinite(b[key]) or b[key] < 0 or (key == "binary_ratio" and b[key] == 0):
      raise ConfigError(f"{where}.{key}={b[key]} must be a finite number "
                        f"{'> 0' if key == 'binary_ratio' else '>= 0'}")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  if feature_dim is None:
    raise ConfigError("defense 'b4b' needs the target's feature dimension")
  tracker = B4B(feature_dim, B4BConfig(**{k: v for k, v in s.items() if k != "name"}))
  return Defense("b4b", s, lambda f, images, account: tracker(account, f, images),
                 per_account=True, out_dim=tracker.out_dim)


KIND = Kind("b4b", "Dubiński et al., Bucks for Buckets, NeurIPS 2023", _settings,
            lambda cfg, feature_dim=None: validate_block(cfg.b4b, "defense.b4b"), _make)
