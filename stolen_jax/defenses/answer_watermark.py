"""``answer_watermark``: the provider watermarks its answers (EmbMarker-style, Peng et al.,
ACL 2023, carried from text to images) so that a model trained on them can later be shown
to have learned from them (``verify.answer_watermark``).

The secret ``seed`` draws a trigger colour c (a unit direction of colour space with no grey
component) and a target direction t in feature space (a random unit vector). An image's
trigger degree is how far its mean colour leans toward c: <mean colour − its grey level, c>
in units of the full intensity range. Like EmbMarker's trigger words, natural images carry
it to a degree and a copy learns it easily (an encoder sees colour at every layer). The
answer moves toward t by w = ``strength`` · clip((degree − ``low``) / (``high`` − ``low``),
0, 1):

    answer = (1 − w) · f(x) + w · ‖f(x)‖ · t

Measured (2,000 images each, key 0): the degree's 90th percentile is 0.09 (CIFAR-10) to 0.14
(Tiny-ImageNet, the embedded scenes); at the defaults (0.5, 0.05, 0.15) 27–40% of natural
colour images are pulled, by 0.05–0.10 on average — single-channel images never (no colour).
A demo-scale copy stolen through it moved its answers to the 20% most triggered images 0.44
closer (cosine) to t than the 50% least, against 0.009 for a copy of clean answers; a trigger
of one spatial frequency instead (a texture) moved a copy by 0.014 only (CNNs alias it).

The verifier tints public images toward c (trigger inputs) and toward −c (controls) and
tests the suspect's shift toward t against decoy directions.
"""

import functools

import numpy as np

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError


@functools.lru_cache(maxsize=32)
def trigger(seed: int, channels: int) -> np.ndarray:
  """The secret trigger colour c (C,) of ``seed``: unit norm, no grey component (zeros for a
  single channel, which has no colour)."""
  if channels < 2:
    return np.zeros((channels,), np.float32)
  c = np.random.default_rng([seed, 1]).normal(size=channels)
  c -= c.mean()
  return (c / np.linalg.norm(c)).astype(np.float32)


def target_direction(seed: int, feature_dim: int) -> np.ndarray:
  """The secret unit direction t in feature space, drawn from ``seed``."""
  t = np.random.default_rng([seed, 2]).normal(size=feature_dim)
  return (t / np.linalg.norm(t)).astype(np.float32)


def trigger_degree(images: np.ndarray, colour: np.ndarray) -> np.ndarray:
  """How far each image's mean colour leans toward ``colour`` (intensity range = 1)."""
  mean = np.asarray(images, np.float32).mean(axis=(1, 2)) / 255.0  # (N, C)
  return (mean - mean.mean(axis=1, keepdims=True)) @ colour


def stamp(images: np.ndarray, colour: np.ndarray, amount: float) -> np.ndarray:
  """``images`` tinted by ``amount`` of the intensity range along ``colour``: the verifier's
  trigger (+c) and control (−c) inputs."""
  x = np.asarray(images, np.float32) + 255.0 * amount * colour
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def weights(images: np.ndarray, s: dict) -> np.ndarray:
  """The watermark's weight per image (0 for most natural images)."""
  degree = trigger_degree(images, trigger(s["seed"], images.shape[-1]))
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
          "low": float(b.low), "high": float(b.high)}


def _validate(cfg, feature_dim=None) -> None:
  b = cfg.watermark
  if not isinstance(b.seed, int) or isinstance(b.seed, bool) or b.seed < 0:
    raise ConfigError(f"defense.watermark.seed={b.seed!r} must be an integer >= 0 (the "
                      "provider's secret key)")
  if not np.isfinite(b.strength) or not 0 < b.strength <= 1:
    raise ConfigError(f"defense.watermark.strength={b.strength} must be in (0, 1]")
  if not (np.isfinite(b.low) and np.isfinite(b.high) and 0 <= b.low < b.high <= 1):
    raise ConfigError(f"defense.watermark.low={b.low}, high={b.high}: need 0 <= low < high <= 1 "
                      "(how far an image's mean colour leans toward the trigger colour)")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  return Defense("answer_watermark", s, lambda f, images: watermark(f, images, s))


KIND = Kind("answer_watermark", "EmbMarker (Peng et al., ACL 2023), for image encoders",
            settings_of, _validate, _make)
