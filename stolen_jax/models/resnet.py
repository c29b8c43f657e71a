"""ResNets as feature extractors (no classifier head).

``cifar`` stem: a 3x3 stride-1 convolution and no max-pool, the variant used for 32x32
inputs by the paper's SimCLR target and its official stolen encoders (512-d features for
ResNet-18/34). ``imagenet`` stem: 7x7 stride-2 convolution and a 3x3 max-pool (ResNet-50,
2048-d features). ``width`` scales every channel count so tests can use tiny networks.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


def batch_norm(train: bool, dtype: Any, name: str | None = None, zero_init: bool = False):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name,
                      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


# He-normal fan-out init, as torchvision's ResNet uses for convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""
  filters: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding=k // 2, use_bias=False,
                                         kernel_init=conv_init, dtype=self.dtype, name=name)
    y = conv(self.filters, 3, self.strides, "conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.filters, 3, 1, "conv2")(y)
    y = batch_norm(train, self.dtype, "bn2")(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = conv(self.filters, 1, self.strides, "proj_conv")(x)
      x = batch_norm(train, self.dtype, "proj_bn")(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (4x expansion) block of ResNet-50 and deeper."""
  filters: int
  strides: int = 1
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding=k // 2, use_bias=False,
                                         kernel_init=conv_init, dtype=self.dtype, name=name)
    out = self.filters * self.expansion
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(conv(self.filters, 1, 1, "conv1")(x)))
    y = nn.relu(batch_norm(train, self.dtype, "bn2")(conv(self.filters, 3, self.strides, "conv2")(y)))
    y = batch_norm(train, self.dtype, "bn3")(conv(out, 1, 1, "conv3")(y))
    if x.shape[-1] != out or self.strides != 1:
      x = batch_norm(train, self.dtype, "proj_bn")(conv(out, 1, self.strides, "proj_conv")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A ResNet encoder: images (N,H,W,3) in [0,1] -> features (N, D) after global pooling."""
  stage_sizes: Sequence[int]
  block: Any = BasicBlock
  stem: str = "cifar"
  width: float = 1.0
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    expansion = getattr(self.block, "expansion", 1)
    return int(round(64 * self.width)) * 2 ** (len(self.stage_sizes) - 1) * expansion

  @nn.compact
  def __call__(self, x, train: bool = False):
    base = int(round(64 * self.width))
    x = x.astype(self.dtype)
    if self.stem == "cifar":
      x = nn.Conv(base, (3, 3), padding=1, use_bias=False, kernel_init=conv_init,
                  dtype=self.dtype, name="stem_conv")(x)
      x = nn.relu(batch_norm(train, self.dtype, "stem_bn")(x))
    else:
      x = nn.Conv(base, (7, 7), (2, 2), padding=3, use_bias=False, kernel_init=conv_init,
                  dtype=self.dtype, name="stem_conv")(x)
      x = nn.relu(batch_norm(train, self.dtype, "stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = self.block(base * 2 ** stage, strides, dtype=self.dtype,
                       name=f"stage{stage + 1}_block{i + 1}")(x, train)
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
