"""What a published encoder does to an image before its first layer: resize, centre crop,
normalise. Applied on device to the uint8 images a query carries, at whatever size the
attacker sends them (the paper resizes STL10's 96-px images to 224 for its real targets)."""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Resize to ``resize`` x ``resize``, centre-crop ``crop``, then (x - mean) / std on [0, 1]
  values. ``method``: jax.image.resize's interpolation (antialiased when shrinking)."""
  crop: int = 224
  resize: int = 256
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD
  method: str = "bilinear"

  def record(self) -> dict:
    """A JSON-able description (part of the target's fingerprint and meta)."""
    return {"crop": self.crop, "resize": self.resize, "mean": list(self.mean),
            "std": list(self.std), "method": self.method}

  def __call__(self, images: jax.Array) -> jax.Array:
    """uint8 or [0, 1] float (N, H, W, 3) -> normalised float32 (N, crop, crop, 3)."""
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
      x = x / 255.0
    n = x.shape[0]
    if x.shape[1:3] != (self.resize, self.resize):
      x = jax.image.resize(x, (n, self.resize, self.resize, 3), self.method, antialias=True)
    top = (self.resize - self.crop) // 2
    x = x[:, top:top + self.crop, top:top + self.crop]
    return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)


IMAGENET = Preprocess()
CLIP = Preprocess(crop=224, resize=224, mean=CLIP_MEAN, std=CLIP_STD, method="cubic")
# EfficientNet-Lite was trained on (x - 127) / 128 of 0-255 pixels, cropped with 32 px margin.
LITE = Preprocess(crop=224, resize=256, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
# SimCLR's TF models (and their PyTorch conversion) take [0, 1] pixels, unnormalised.
UNIT = Preprocess(crop=224, resize=256, mean=(0.0,) * 3, std=(1.0,) * 3)
