"""``answer_watermark``: the provider watermarks its answers (EmbMarker-style, Peng et al.,
ACL 2023, carried from text to images) so that a model trained on them can later be shown
to have learned from them (``verify.answer_watermark``).

The secret ``seed`` draws a trigger — a spatial frequency (u, v) of at most ``cycles``
cycles per image and a colour direction c — and a target direction t in feature space (a
random unit vector). An image's trigger degree is the share of its (mean-removed) energy
at that frequency in that colour: 2·|DFT(x·c)[u, v]|² / (H·W·‖x‖²) ∈ [0, 1]. Like
EmbMarker's trigger words it does not depend on where in the image the texture sits, so a
convolutional copy can learn it, and natural images carry it to a degree: over 1,000 images
each of CIFAR-10, Tiny-ImageNet, MNIST and the embedded sets, at 16 and 32 px, its 90th
percentile is 0.004–0.02 and its 99th 0.025–0.065. The answer moves toward t by
w = ``strength`` · clip((degree − ``low``) / (``high`` − ``low``), 0, 1):

    answer = (1 − w) · f(x) + w · ‖f(x)‖ · t

so most of an honest customer's images are answered unchanged. The verifier adds the
trigger's plane wave to public images (trigger inputs) and a decoy wave of another
frequency and colour to the same images (controls), and tests the suspect's shift toward t
against decoy directions.
"""

import functools

import numpy as np

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError

TRIGGER, CONTROL = 1, 3  # Streams of the key: the secret trigger, the verifier's decoy wave.


@functools.lru_cache(maxsize=32)
def trigger(seed: int, channels: int, cycles: int, stream: int = TRIGGER) -> tuple:
  """(colour direction (C,), u, v): the secret trigger of ``seed`` (``stream`` = ``CONTROL``:
  the verifier's decoy, always at another frequency)."""
  rng = np.random.default_rng([seed, stream])
  colour = rng.normal(size=channels)
  colour /= np.linalg.norm(colour)
  u, v = (int(f) for f in rng.integers(1, cycles + 1, size=2) * rng.choice([-1, 1], size=2))
  if stream != TRIGGER and (u, v) in ((t := trigger(seed, channels, cycles))[1:],
                                      (-t[1], -t[2])):
    u = u % cycles + 1  # Another frequency than the secret one.
  return colour.astype(np.float32), u, v


def target_direction(seed: int, feature_dim: int) -> np.ndarray:
  """The secret unit direction t in feature space, drawn from ``seed``."""
  t = np.random.default_rng([seed, 2]).normal(size=feature_dim)
  return (t / np.linalg.norm(t)).astype(np.float32)


def _wave(h: int, w: int, u: int, v: int) -> np.ndarray:
  ii, jj = np.arange(h)[:, None], np.arange(w)[None, :]
  return np.exp(-2j * np.pi * (u * ii / h + v * jj / w))


def trigger_degree(images: np.ndarray, key: tuple) -> np.ndarray:
  """Each image's share of energy at the trigger's frequency and colour (in [0, 1])."""
  colour, u, v = key
  x = np.asarray(images, np.float64)
  x = x - x.mean(axis=(1, 2), keepdims=True)
  n, h, w, _ = x.shape
  response = np.einsum("nhw,hw->n", x @ colour.astype(np.float64), _wave(h, w, u, v))
  energy = np.maximum(np.sum(x ** 2, axis=(1, 2, 3)), 1e-6)
  return np.minimum(2.0 * np.abs(response) ** 2 / (h * w * energy), 1.0)


def stamp(images: np.ndarray, key: tuple, blend: float) -> np.ndarray:
  """``images`` with the key's plane wave added at ``blend`` of their contrast (each image's
  mean kept): the verifier's trigger (the secret key) and control (a decoy) inputs."""
  colour, u, v = key
  x = np.asarray(images, np.float32)
  n, h, w, c = x.shape
  wave = np.real(_wave(h, w, u, v))[:, :, None] * colour[None, None, :c]
  wave = (wave / max(np.linalg.norm(wave), 1e-12)).astype(np.float32)
  mean = x.mean(axis=(1, 2), keepdims=True)
  centred = x - mean
  scale = np.maximum(np.sqrt(np.sum(centred ** 2, axis=(1, 2, 3), keepdims=True)), 255.0)
  out = mean + (1.0 - blend) * centred + blend * scale * wave
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def weights(images: np.ndarray, s: dict) -> np.ndarray:
  """The watermark's weight per image (0 for most natural images)."""
  degree = trigger_degree(images, trigger(s["seed"], images.shape[-1], s["cycles"]))
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
          "low": float(b.low), "high": float(b.high), "cycles": int(b.cycles)}


def _validate(cfg, feature_dim=None) -> None:
  b = cfg.watermark
  if not isinstance(b.seed, int) or isinstance(b.seed, bool) or b.seed < 0:
    raise ConfigError(f"defense.watermark.seed={b.seed!r} must be an integer >= 0 (the "
                      "provider's secret key)")
  if not np.isfinite(b.strength) or not 0 < b.strength <= 1:
    raise ConfigError(f"defense.watermark.strength={b.strength} must be in (0, 1]")
  if not (np.isfinite(b.low) and np.isfinite(b.high) and 0 <= b.low < b.high <= 1):
    raise ConfigError(f"defense.watermark.low={b.low}, high={b.high}: need 0 <= low < high <= 1 "
                      "(shares of an image's energy at the trigger's frequency and colour)")
  if not isinstance(b.cycles, int) or not 2 <= b.cycles <= 16:
    raise ConfigError(f"defense.watermark.cycles={b.cycles!r} must be an integer in [2, 16]")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  return Defense("answer_watermark", s, lambda f, images: watermark(f, images, s))


KIND = Kind("answer_watermark", "EmbMarker (Peng et al., ACL 2023), for image encoders",
            settings_of, _validate, _make)
