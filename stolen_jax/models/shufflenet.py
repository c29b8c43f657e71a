"""ShuffleNetV2 x1.0 for 32x32 inputs (CIFAR variant: 3x3 stride-1 stem of 24 channels, no
max-pool; stages of 4, 8, 4 units with 116, 232, 464 channels; a 1x1 convolution to 1024).
Feature: the 1024 channels, globally averaged.

Full width: 1.26M parameters against Table V's 1.8M (-30%). This is the standard x1.0
network (torchvision's feature extractor has 1.25M; 2.28M with its 1000-way head); the
paper does not say what its 1.8M counts, so we keep the standard network.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stolen_jax.models.resnet import batch_norm


def channel_shuffle(x, groups: int = 2):
  """Interleaves channels of ``groups`` groups (N,H,W,C)."""
  n, h, w, c = x.shape
  return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)


class ShuffleNetV2(nn.Module):
  """ShuffleNetV2 units: channel split, depthwise separable branch, concat, shuffle."""
  stage_channels: tuple = (116, 232, 464)
  stage_units: tuple = (4, 8, 4)
  final_channels: int = 1024
  width: float = 1.0
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return max(2, int(round(self.final_channels * self.width)))

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = lambda f, k, s=1, groups=1: nn.Conv(f, (k, k), (s, s), padding=k // 2, use_bias=False,
                                               feature_group_count=groups, dtype=self.dtype)
    bn = lambda y: batch_norm(train, self.dtype)(y)
    even = lambda c: max(2, 2 * int(round(c * self.width / 2)))
    x = nn.relu(bn(conv(even(24), 3)(x.astype(self.dtype))))
    for out, units in zip(self.stage_channels, self.stage_units):
      out = even(out)
      for i in range(units):
        if i == 0:  # Down-sampling unit: both branches see the whole input.
          left = bn(conv(x.shape[-1], 3, 2, groups=x.shape[-1])(x))
          left = nn.relu(bn(conv(out // 2, 1)(left)))
          right = nn.relu(bn(conv(out // 2, 1)(x)))
        else:
          left, right = jnp.split(x, 2, axis=-1)
          right = nn.relu(bn(conv(out // 2, 1)(right)))
        right = bn(conv(out // 2, 3, 2 if i == 0 else 1, groups=out // 2)(right))
        right = nn.relu(bn(conv(out // 2, 1)(right)))
        x = channel_shuffle(jnp.concatenate([left, right], axis=-1))
    x = nn.relu(bn(conv(self.feature_dim, 1)(x)))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
