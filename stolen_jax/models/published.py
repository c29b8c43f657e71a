"""Encoders as published (not Table V's zoo): the architectures real providers deploy, in
Flax, with every layer where its published PyTorch twin has it, so published weights load
one tensor per parameter (``stolen_jax.targets.convert``).

* ``ClipResNet``: CLIP's ModifiedResNet (three-convolution stem, anti-aliased average-pool
  downsampling, attention pooling to ``output_dim``);
* ``VisionTransformer``: a ViT image tower (CLIP's: pre-norm, QuickGELU, projection; or
  timm/DINO's: GELU, class token or mean pooled);
* ``EfficientNetLite``: EfficientNet-Lite (ReLU6, no squeeze-excitation, TF "SAME" padding,
  fixed 32-channel stem and 1280-channel head).

torchvision's ResNets are ``models.resnet.ResNet`` with the ImageNet stem. Inputs are
already normalised by the target's preprocessing (``targets.preprocess``).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _bn(eps: float = 1e-5, name: str | None = None):
  return nn.BatchNorm(use_running_average=True, epsilon=eps, momentum=0.9, name=name)


class ClipBottleneck(nn.Module):
  """CLIP's bottleneck: every convolution stride 1; an average pool does the striding."""
  planes: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    out = nn.relu(_bn(name="bn1")(nn.Conv(self.planes, (1, 1), use_bias=False, name="conv1")(x)))
    out = nn.relu(_bn(name="bn2")(nn.Conv(self.planes, (3, 3), padding=1, use_bias=False,
                                          name="conv2")(out)))
    if self.stride > 1:
      out = nn.avg_pool(out, (self.stride, self.stride), (self.stride, self.stride))
    out = _bn(name="bn3")(nn.Conv(self.planes * 4, (1, 1), use_bias=False, name="conv3")(out))
    if self.stride > 1 or x.shape[-1] != self.planes * 4:
      if self.stride > 1:
        x = nn.avg_pool(x, (self.stride, self.stride), (self.stride, self.stride))
      x = _bn(name="downsample_bn")(nn.Conv(self.planes * 4, (1, 1), use_bias=False,
                                            name="downsample_conv")(x))
    return nn.relu(out + x)


class AttentionPool(nn.Module):
  """Multi-head attention of the mean token (plus a learned position) over all positions."""
  num_heads: int
  output_dim: int

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    pos = self.param("positional_embedding", nn.initializers.normal(c ** -0.5), (h * w + 1, c))
    x = x + pos[None].astype(x.dtype)
    head = c // self.num_heads
    q = nn.Dense(c, name="q_proj")(x[:, :1]).reshape(n, 1, self.num_heads, head)
    k = nn.Dense(c, name="k_proj")(x).reshape(n, h * w + 1, self.num_heads, head)
    v = nn.Dense(c, name="v_proj")(x).reshape(n, h * w + 1, self.num_heads, head)
    weights = jax.nn.softmax(jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(head), axis=-1)
    out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, c)
    return nn.Dense(self.output_dim, name="c_proj")(out)


class ClipResNet(nn.Module):
  """CLIP's ModifiedResNet image tower: images -> (N, output_dim) embeddings."""
  layers: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  output_dim: int = 1024
  heads: int = 32
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return self.output_dim

  @nn.compact
  def __call__(self, x, train: bool = False):
    w = self.width
    for i, (c, s) in enumerate(((w // 2, 2), (w // 2, 1), (w, 1)), start=1):
      x = nn.Conv(c, (3, 3), (s, s), padding=1, use_bias=False, name=f"conv{i}")(x)
      x = nn.relu(_bn(name=f"bn{i}")(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))
    for stage, blocks in enumerate(self.layers):
      for b in range(blocks):
        x = ClipBottleneck(w * 2 ** stage, 1 if stage == 0 or b else 2,
                           name=f"layer{stage + 1}_{b}")(x)
    return AttentionPool(self.heads, self.output_dim, name="attnpool")(x).astype(jnp.float32)


def quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
  """Pre-norm transformer block: x + attn(ln_1(x)); x + mlp(ln_2(x))."""
  width: int
  heads: int
  eps: float
  quick: bool

  @nn.compact
  def __call__(self, x):
    n, length, c = x.shape
    y = nn.LayerNorm(epsilon=self.eps, name="ln_1")(x)
    qkv = nn.Dense(3 * c, name="qkv")(y).reshape(n, length, 3, self.heads, c // self.heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    weights = jax.nn.softmax(jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(c // self.heads), -1)
    y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, c)
    x = x + nn.Dense(c, name="out_proj")(y)
    y = nn.LayerNorm(epsilon=self.eps, name="ln_2")(x)
    y = nn.Dense(4 * c, name="fc1")(y)
    y = quick_gelu(y) if self.quick else nn.gelu(y, approximate=False)
    return x + nn.Dense(c, name="fc2")(y)


class VisionTransformer(nn.Module):
  """A ViT image tower. ``style='clip'``: conv1 without bias, ln_pre, QuickGELU, ln_post on
  the class token, then ``proj`` to ``output_dim``. ``style='timm'`` (DINO, timm): patch
  embedding with bias, GELU, final norm, and the class token (``pool='token'``) or the mean
  of the patch tokens (``pool='mean'``) as the feature."""
  image_size: int = 224
  patch: int = 16
  width: int = 768
  layers: int = 12
  heads: int = 12
  output_dim: int = 512
  style: str = "clip"
  pool: str = "token"
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return self.output_dim if self.style == "clip" else self.width

  @nn.compact
  def __call__(self, x, train: bool = False):
    clip = self.style == "clip"
    eps = 1e-5 if clip else 1e-6
    x = nn.Conv(self.width, (self.patch, self.patch), (self.patch, self.patch), padding="VALID",
                use_bias=not clip, name="conv1")(x)
    n = x.shape[0]
    x = x.reshape(n, -1, self.width)
    cls = self.param("class_embedding", nn.initializers.normal(0.02), (self.width,))
    x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, self.width)), x], axis=1)
    pos = self.param("positional_embedding", nn.initializers.normal(0.02), (x.shape[1], self.width))
    x = x + pos[None]
    if clip:
      x = nn.LayerNorm(epsilon=eps, name="ln_pre")(x)
    for i in range(self.layers):
      x = ResidualAttentionBlock(self.width, self.heads, eps, clip, name=f"block{i}")(x)
    if clip:
      x = nn.LayerNorm(epsilon=eps, name="ln_post")(x[:, 0])
      proj = self.param("proj", nn.initializers.normal(self.width ** -0.5),
                        (self.width, self.output_dim))
      return (x @ proj).astype(jnp.float32)
    x = nn.LayerNorm(epsilon=eps, name="norm")(x)
    out = x[:, 0] if self.pool == "token" else x[:, 1:].mean(axis=1)
    return out.astype(jnp.float32)


# EfficientNet-Lite0's blocks: (repeats, kernel, stride, expand ratio, in, out).
LITE0_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))


class DepthwiseConv(nn.Module):
  """A depthwise k x k convolution with TF "SAME" padding, as a sum of k² shifted,
  per-channel-scaled views. Same parameter as ``nn.Conv(feature_group_count=C)`` (a
  (k, k, 1, C) ``kernel``), same result; on XLA:CPU grouped convolutions take the slow
  generic path (~25x slower than this at 112 x 112 x 96), elsewhere this fuses as well."""
  kernel_size: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    c = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c))
    pads = []
    for size in x.shape[1:3]:
      total = max((-(-size // s) - 1) * s + k - size, 0)
      pads.append((total // 2, total - total // 2))
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h, out_w = -(-x.shape[1] // s), -(-x.shape[2] // s)
    out = 0
    for i in range(k):
      for j in range(k):
        view = xp[:, i:i + (out_h - 1) * s + 1:s, j:j + (out_w - 1) * s + 1:s, :]
        out = out + view * kernel[i, j, 0]
    return out


class MBConv(nn.Module):
  """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (ReLU6; no SE in Lite)."""
  kernel: int
  stride: int
  expand: int
  out: int
  eps: float = 1e-3

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = x
    if self.expand != 1:
      y = jax.nn.relu6(_bn(self.eps, "bn0")(nn.Conv(c * self.expand, (1, 1), use_bias=False,
                                                      name="expand_conv")(y)))
    hidden = y.shape[-1]
    y = DepthwiseConv(self.kernel, self.stride, name="depthwise_conv")(y)
    y = jax.nn.relu6(_bn(self.eps, "bn1")(y))
    y = _bn(self.eps, "bn2")(nn.Conv(self.out, (1, 1), use_bias=False, name="project_conv")(y))
    return x + y if self.stride == 1 and c == self.out else y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite0 (blocks ``LITE0_BLOCKS``, scaled by ``width`` for tests): images ->
  the 1280-d pooled features before the classifier."""
  width: float = 1.0
  head: int = 1280
  blocks: Sequence[tuple] = LITE0_BLOCKS
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    return self.head

  @nn.compact
  def __call__(self, x, train: bool = False):
    scale = lambda c: max(8, int(round(c * self.width)))
    x = nn.Conv(scale(32), (3, 3), (2, 2), padding="SAME", use_bias=False, name="conv_stem")(x)
    x = jax.nn.relu6(_bn(1e-3, "bn0")(x))
    index = 0
    for repeats, kernel, stride, expand, _, out in self.blocks:
      for r in range(repeats):
        x = MBConv(kernel, stride if r == 0 else 1, expand, scale(out), name=f"block{index}")(x)
        index += 1
    x = nn.Conv(self.head, (1, 1), use_bias=False, name="conv_head")(x)
    x = jax.nn.relu6(_bn(1e-3, "bn1")(x))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
