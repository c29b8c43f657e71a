"""Table XI, row 1: Google's ImageNet SimCLR ResNet-50 (1x) as the target, 2048-d features.

Weights: SimCLR v1's TF checkpoints (github.com/google-research/simclr) converted to a
PyTorch state dict with torchvision's ResNet-50 names (e.g. the simclr-converter project's
resnet50-1x.pth); the model takes [0, 1] pixels, resized to 256 and centre-cropped to 224.
  python -m stolen_jax.main --config=configs/realworld/simclr_resnet50.py \\
      --config.steal.target=import:simclr_resnet50:/weights/resnet50-1x.pth \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/cifar10.npz,npz:DIR/mnist.npz
The paper's row (STL10 surrogate at 224 px, 13k queries): SA/TA >= 0.93 on its downstream
sets. Attacker here: ResNet-34 at the surrogate's resolution (steal.image_size).
"""

from stolen_jax import defaults


def get_config():
  return defaults.realworld_config("import:simclr_resnet50:WEIGHTS.pth")
