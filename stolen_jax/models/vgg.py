"""VGG-19 (with or without BatchNorm) for 32x32 inputs, as the CIFAR variants the paper's
Table V uses: 16 3x3 convolutions in 5 stages with max-pooling, no fully connected
layers; the 512-d output of the last stage (1x1 spatially at 32 px) is the feature.
Full width: 20.02M parameters (Table V: 20.0M for both).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stolen_jax.errors import ConfigError
from stolen_jax.models.resnet import batch_norm

VGG19_STAGES = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))


class VGG(nn.Module):
  """VGG feature extractor; ``batch_norm=True`` is VGG19_bn."""
  stages: tuple = VGG19_STAGES
  use_batch_norm: bool = False
  width: float = 1.0
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return int(round(self.stages[-1][-1] * self.width))

  @nn.compact
  def __call__(self, x, train: bool = False):
    min_size = 2 ** len(self.stages)
    if min(x.shape[1:3]) < min_size:  # Each stage halves the resolution.
      raise ConfigError(f"VGG needs images of at least {min_size}x{min_size} px, got "
                        f"{x.shape[1]}x{x.shape[2]}")
    x = x.astype(self.dtype)
    for stage in self.stages:
      for channels in stage:
        x = nn.Conv(int(round(channels * self.width)), (3, 3), padding=1, dtype=self.dtype)(x)
        if self.use_batch_norm:
          x = batch_norm(train, self.dtype)(x)
        x = nn.relu(x)
      x = nn.max_pool(x, (2, 2), (2, 2))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
