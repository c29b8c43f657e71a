"""DenseNet-121 for 32x32 inputs (the common CIFAR variant: a 3x3 stem of 2k channels, no
max-pool; dense blocks of 6, 12, 24, 16 bottleneck layers, growth k=32, transitions halving
channels and resolution). Feature: global average of the final 1024 channels.

Full width: 6.96M parameters against Table V's 7.5M (-7%): the paper's count most likely
includes the ImageNet stem (7x7 convolution) or a classifier head; the feature extractor
itself is the same depth and growth.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stolen_jax.models.resnet import batch_norm


class DenseNet(nn.Module):
  """BN-ReLU-Conv dense blocks; ``width`` scales the growth rate."""
  blocks: tuple = (6, 12, 24, 16)
  growth: int = 32
  reduction: float = 0.5
  width: float = 1.0
  dtype: Any = jnp.float32

  def _channels(self):
    k = max(1, int(round(self.growth * self.width)))
    c = 2 * k
    for i, n in enumerate(self.blocks):
      c += n * k
      if i < len(self.blocks) - 1:
        c = int(c * self.reduction)
    return k, c

  @property
  def feature_dim(self) -> int:
    return self._channels()[1]

  @nn.compact
  def __call__(self, x, train: bool = False):
    k, _ = self._channels()
    conv = lambda f, size: nn.Conv(f, (size, size), padding=size // 2, use_bias=False, dtype=self.dtype)
    x = conv(2 * k, 3)(x.astype(self.dtype))
    for i, n in enumerate(self.blocks):
      for _ in range(n):
        y = conv(4 * k, 1)(nn.relu(batch_norm(train, self.dtype)(x)))
        y = conv(k, 3)(nn.relu(batch_norm(train, self.dtype)(y)))
        x = jnp.concatenate([x, y], axis=-1)
      if i < len(self.blocks) - 1:
        x = conv(int(x.shape[-1] * self.reduction), 1)(nn.relu(batch_norm(train, self.dtype)(x)))
        x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(batch_norm(train, self.dtype)(x))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
