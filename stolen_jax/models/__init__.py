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
from stolen_jax.models import resnet

_REGISTRY: dict[str, Callable[..., Any]] = {
    # One basic block per stage: the "small ResNet" of CPU benchmarks and demos.
    "resnet10": functools.partial(resnet.ResNet, stage_sizes=(1, 1, 1, 1)),
    "resnet18": functools.partial(resnet.ResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet50": functools.partial(resnet.ResNet, stage_sizes=(3, 4, 6, 3),
                                  block=resnet.Bottleneck, stem="imagenet"),
}

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def names() -> list[str]:
  """The registered architecture names."""
  return sorted(_REGISTRY)


def get(name: str, width: float = 1.0, dtype: str = "float32"):
  """Builds the encoder ``name`` (see ``names()``) with a channel ``width`` multiplier."""
  choose("architecture", name, _REGISTRY)
  choose("dtype", dtype, _DTYPES)
  return _REGISTRY[name](width=width, dtype=_DTYPES[dtype])


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
