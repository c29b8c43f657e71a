"""Target encoder of the paper (§V-A1): SimCLR, ResNet-18, CIFAR-10 train, Adam 1e-3,
batch 256, 1000 epochs, RandomResizedCrop + flip + ColorJitter + RandomGrayscale.

Run (TFDS cifar10 prepared, e.g. `tfds build cifar10 --data_dir=DIR`):
  python -m stolen_jax.main --config=configs/pretrain_simclr_cifar10.py \
      [--config.pretrain.data_dir=DIR] [--workdir=workdir/pretrain_simclr_cifar10]
Or from an .npz of uint8 x_train/y_train/x_test/y_test arrays:
  python -m stolen_jax.main --config=configs/pretrain_simclr_cifar10.py \
      --config.pretrain.dataset=npz:/path/cifar10.npz

Expected: NT-Xent falls from ~6.2 (ln of 2*256-1 negatives) towards ~4.8, and the kNN monitor
on the CIFAR-10 test split climbs to roughly 80-85% by the end (SimCLR ResNet-18 on CIFAR-10).
The checkpoint in <workdir>/pretrain/checkpoints is the target encoder for the steal configs.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pretrain")
  config.pretrain = defaults.pretrain_block()
  return config
