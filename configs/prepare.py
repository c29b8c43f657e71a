"""Turns a dataset's official distribution into the .npz every run reads (no download).

  python -m stolen_jax.main --config=configs/prepare.py --config.prepare.format=cifar10 \\
      --config.prepare.source=cifar-10-python.tar.gz --config.prepare.output=data/cifar10.npz
  python -m stolen_jax.main --config=configs/prepare.py --config.prepare.format=imagenet32 \\
      --config.prepare.source=Imagenet32_train_npz/ --config.prepare.max_train=50000 \\
      --config.prepare.output=data/imagenet32.npz

Formats: cifar10, cifar100, stl10, svhn, gtsrb, mnist, fashion_mnist, imagenet32, imagenet64,
image_folder (README "Data" lists where each is published). It prints the npz:PATH spec to
use as a dataset in any config.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("prepare")
  config.prepare = defaults.prepare_block()
  return config
