"""Tiny encoders for the verification tests, as ``callable:verify_encoders:NAME`` takes them:
a victim (a fixed random ReLU network on pooled pixels), copies stolen from it by regression
on its answers to surrogate images (clean or answer-watermarked), and innocent encoders of
the same architecture drawn with other seeds."""

import functools

import numpy as np

from stolen_jax.data import sources
from stolen_jax.defenses import answer_watermark as mark

DIM = 32
WATERMARK = {"name": "answer_watermark", "seed": 5, "strength": 0.5, "low": 0.05, "high": 0.15}


def _pooled(images: np.ndarray) -> np.ndarray:
  x = images.astype(np.float32) / 255.0
  n, h, w, c = x.shape
  return x.reshape(n, 4, h // 4, 4, w // 4, c).mean(axis=(2, 4)).reshape(n, -1)


def network(images: np.ndarray, seed: int) -> np.ndarray:
  """A random two-layer ReLU network of ``seed`` on 4×4-pooled pixels."""
  rng = np.random.default_rng(seed)
  x = _pooled(images)
  w1 = rng.normal(size=(x.shape[1], 128)).astype(np.float32) / np.sqrt(x.shape[1])
  w2 = rng.normal(size=(128, DIM)).astype(np.float32) / np.sqrt(128)
  return np.maximum(np.maximum(x @ w1, 0) @ w2, 0)


def victim(images):
  return network(images, 0)


def _attacker_features(images):
  """The attacker's own model: pixels at 8×8, a wide random ReLU layer over them, and the
  magnitude spectrum of each channel (translation-invariant, as a CNN's pooled features)."""
  x = images.astype(np.float32) / 255.0
  n, h, w, c = x.shape
  fine = x.reshape(n, 8, h // 8, 8, w // 8, c).mean(axis=(2, 4)).reshape(n, -1)
  fine = fine - fine.mean(1, keepdims=True)
  rng = np.random.default_rng(99)
  w1 = rng.normal(size=(fine.shape[1], 512)).astype(np.float32) / np.sqrt(fine.shape[1])
  spectrum = np.abs(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True), axes=(1, 2)))
  spectrum = spectrum.reshape(n, -1) / (h * w) ** 0.5
  return np.concatenate([fine, np.maximum(fine @ w1, 0), spectrum, np.ones((n, 1), np.float32)], 1)


@functools.lru_cache(maxsize=2)
def _copy_weights(watermarked: bool) -> np.ndarray:
  surrogate = sources.load("embedded:scenes", "train", image_size=16, num_examples=3000,
                           seed=3).images
  answers = victim(surrogate)
  if watermarked:
    answers = mark.watermark(answers, surrogate, WATERMARK)
  phi = _attacker_features(surrogate)
  return np.linalg.solve(phi.T @ phi + 1e-2 * np.eye(phi.shape[1]), phi.T @ answers)


def stolen(images):
  """Ridge regression onto the victim's clean answers to 3,000 surrogate images."""
  return _attacker_features(images) @ _copy_weights(False)


def stolen_watermarked(images):
  """The same attack against an API that watermarked its answers."""
  return _attacker_features(images) @ _copy_weights(True)


def innocent(seed: int):
  """An encoder of the victim's architecture, drawn independently."""
  return lambda images: network(images, 1000 + seed)


innocent1, innocent2, innocent3, innocent4, innocent5 = (innocent(s) for s in range(1, 6))


def wide(images):
  """An innocent of another feature dimension (64)."""
  return np.concatenate([network(images, 7), network(images, 8)], axis=1)


victim.image_size, victim.feature_dim = 16, DIM


def big_input(images):
  """An innocent that takes 32-px images."""
  return network(images, 11)


big_input.image_size = 32
