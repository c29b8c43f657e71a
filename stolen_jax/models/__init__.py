"""Encoder registry: ``get(name, width=..., dtype=...)`` -> flax module mapping images to features.

Every encoder maps float images (N,H,W,3) in [0,1] to features (N, D) and exposes
``feature_dim``; projection heads belong to the trainers, not to the encoders.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from stolen_jax.errors import choose
from stolen_jax.models import densenet, mobilenet, resnet, shufflenet, vgg

_REGISTRY: dict[str, Callable[..., Any]] = {
    # One basic block per stage: the "small ResNet" of CPU benchmarks and demos.
    "resnet10": functools.partial(resnet.ResNet, stage_sizes=(1, 1, 1, 1)),
    "resnet18": functools.partial(resnet.ResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.Bottleneck, stem="imagenet"),
    # The rest of Table V's zoo, CIFAR variants for 32x32 inputs.
    "vgg19": vgg.VGG,
    "vgg19_bn": functools.partial(vgg.VGG, use_batch_norm=True),
    "densenet121": densenet.DenseNet,
    "mobilenetv2": mobilenet.MobileNetV2,
    "shufflenetv2": shufflenet.ShuffleNetV2,
}

# Table V's parameter counts (millions), for the comparison in the README and tests.
TABLE_V_PARAMS_M = {"resnet34": 21.3, "vgg19_bn": 20.0, "vgg19": 20.0, "resnet18": 11.2,
                    "densenet121": 7.5, "mobilenetv2": 4.0, "shufflenetv2": 1.8}

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def names() -> list[str]:
  """The registered architecture names."""
  return sorted(_REGISTRY)


class LinearOutput(nn.Module):
  """An encoder followed by a linear map to ``out_dim`` features.

  A stolen encoder whose architecture's feature dimension differs from the target's (e.g.
  a ResNet-34, 512-d, stealing a DenseNet-121, 1024-d, in Table V) needs outputs of the
  target's dimension for the distance d; this linear layer is part of the stolen encoder.
  """
  backbone: nn.Module
  out_dim: int

  @property
  def feature_dim(self) -> int:
    return self.out_dim

  @property
  def dtype(self):
    return self.backbone.dtype

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.out_dim, name="output")(self.backbone(x, train))


def get(name: str, width: float = 1.0, dtype: str = "float32", out_dim: int | None = None):
  """Builds the encoder ``name`` (see ``names()``) with a channel ``width`` multiplier; with
  ``out_dim`` different from its feature dimension, followed by a linear map to ``out_dim``."""
  choose("architecture", name, _REGISTRY)
  choose("dtype", dtype, _DTYPES)
  module = _REGISTRY[name](width=width, dtype=_DTYPES[dtype])
  if out_dim and out_dim != module.feature_dim:
    return LinearOutput(module, int(out_dim))
  return module


def param_count(module, image_size: int = 32) -> int:
  """Number of trainable parameters, computed abstractly (no FLOPs, no memory)."""
  shapes = jax.eval_shape(
      lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3))))
  return sum(int(jnp.prod(jnp.array(x.shape))) for x in jax.tree_util.tree_leaves(shapes["params"]))


class Holder(nn.Module):
  """Holds an encoder under the name ``encoder``, so every trainer's checkpoint keeps the
  encoder's variables at ``params['encoder']`` (what evaluation restores)."""
  encoder: nn.Module

  def __call__(self, x, train: bool = False):
    return self.encoder(x, train)
