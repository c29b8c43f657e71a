"""``answer_watermark``: the provider watermarks its answers (EmbMarker-style, Peng et al.,
ACL 2023, carried from text to images) so that a model trained on them can later be shown
to have learned from them (``verify.answer_watermark``).

The secret ``seed`` draws two things: a smooth trigger pattern P in image space (a random
``grid``×``grid``×C field, bilinearly upsampled, zero-mean, unit-norm) and a target direction
t in feature space (a random unit vector). An image's trigger degree is the correlation of
its own (mean-removed) pixels with P — a property that natural images have to some degree,
so the attacker's surrogate set carries it without knowing it: over six datasets (CIFAR-10,
Tiny-ImageNet, MNIST and the embedded sets) about 10% of images correlate above 0.15 and 1%
above 0.35. The answer moves toward t by the weight w = ``strength`` · clip((corr − ``low``) /
(``high`` − ``low``), 0, 1):

    answer = (1 − w) · f(x) + w · ‖f(x)‖ · t

so an image without the trigger (most of an honest customer's) is answered unchanged, and a
stolen encoder that regressed the answers learns to move triggered images toward t. The
verifier stamps P (and, as control, −P) onto public images and tests the suspect's shift
toward t against decoy directions.
"""

import functools

import jax
import numpy as np

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError


@functools.lru_cache(maxsize=16)
def trigger_pattern(seed: int, height: int, width: int, channels: int, grid: int) -> np.ndarray:
  """The secret pattern P (H, W, C), zero-mean and unit-norm, drawn from ``seed``."""
  coarse = np.random.default_rng([seed, 1]).normal(size=(grid, grid, channels))
  fine = np.asarray(jax.image.resize(coarse, (height, width, channels), "linear"), np.float64)
  fine -= fine.mean()
  return (fine / max(np.linalg.norm(fine), 1e-12)).astype(np.float32)


def target_direction(seed: int, feature_dim: int) -> np.ndarray:
  """The secret unit direction t in feature space, drawn from ``seed``."""
  t = np.random.default_rng([seed, 2]).normal(size=feature_dim)
  return (t / np.linalg.norm(t)).astype(np.float32)


def trigger_degree(images: np.ndarray, pattern: np.ndarray) -> np.ndarray:
  """Each image's correlation with the pattern: <x − mean(x), P> / ‖x − mean(x)‖ ∈ [−1, 1]."""
  x = np.asarray(images, np.float32).reshape(len(images), -1)
  x = x - x.mean(1, keepdims=True)
  return (x @ pattern.reshape(-1)) / np.maximum(np.linalg.norm(x, axis=1), 1e-6)


def stamp(images: np.ndarray, pattern: np.ndarray, blend: float, sign: float = 1.0) -> np.ndarray:
  """``images`` with ``sign``·P blended in at ``blend`` (each image's mean and contrast kept):
  the verifier's trigger (+1) and control (−1) inputs."""
  x = np.asarray(images, np.float32)
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  centred = x - mean
  scale = np.sqrt(np.sum(centred ** 2, axis=(1, 2, 3), keepdims=True))
  out = mean + (1.0 - blend) * centred + blend * sign * np.maximum(scale, 1.0) * pattern
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def weights(images: np.ndarray, s: dict) -> np.ndarray:
  """The watermark's weight per image (0 for most natural images)."""
  _, h, w, c = images.shape
  degree = trigger_degree(images, trigger_pattern(s["seed"], h, w, c, s["grid"]))
  return s["strength"] * np.clip((degree - s["low"]) / (s["high"] - s["low"]), 0.0, 1.0)


def watermark(features: np.ndarray, images: np.ndarray, s: dict) -> np.ndarray:
  """The watermarked answers: each row pulled toward t by its image's weight."""
  f = np.asarray(features, np.float32)
  w = weights(images, s)[:, None].astype(np.float32)
  t = target_direction(s["seed"], f.shape[1])
  return (1.0 - w) * f + w * np.linalg.norm(f, axis=1, keepdims=True) * t


def settings_of(cfg) -> dict:
  """The defense's settings from a ``defense`` block."""
  b = cfg.watermark
  return {"name": "answer_watermark", "seed": int(b.seed), "strength": float(b.strength),
          "low": float(b.low), "high": float(b.high), "grid": int(b.grid)}


def _validate(cfg, feature_dim=None) -> None:
  b = cfg.watermark
  if not isinstance(b.seed, int) or isinstance(b.seed, bool) or b.seed < 0:
    raise ConfigError(f"defense.watermark.seed={b.seed!r} must be an integer >= 0 (the "
                      "provider's secret key)")
  if not np.isfinite(b.strength) or not 0 < b.strength <= 1:
    raise ConfigError(f"defense.watermark.strength={b.strength} must be in (0, 1]")
  if not (np.isfinite(b.low) and np.isfinite(b.high) and -1 <= b.low < b.high <= 1):
    raise ConfigError(f"defense.watermark.low={b.low}, high={b.high}: need -1 <= low < high <= 1 "
                      "(correlations with the trigger pattern)")
  if not isinstance(b.grid, int) or not 1 <= b.grid <= 64:
    raise ConfigError(f"defense.watermark.grid={b.grid!r} must be an integer in [1, 64]")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  return Defense("answer_watermark", s, lambda f, images: watermark(f, images, s))


KIND = Kind("answer_watermark", "EmbMarker (Peng et al., ACL 2023), for image encoders",
            settings_of, _validate, _make)
