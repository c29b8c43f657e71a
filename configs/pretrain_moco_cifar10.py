"""A MoCo target (§II-A Eq. 2, Table VII): the paper's target settings — ResNet-18, CIFAR-10
train, batch 256, Adam 1e-3, 1000 epochs, crop+flip+jitter+grayscale — with MoCo v2's own:
K=4096 queued keys, momentum m=0.99, temperature τ=0.1, MLP head 512-128 without BN, and
shuffle-BN over 8 groups (see stolen_jax/moco.py).

Run (TFDS cifar10 prepared in DIR, or --config.pretrain.dataset=npz:/path/cifar10.npz):
  python -m stolen_jax.main --config=configs/pretrain_moco_cifar10.py [--config.pretrain.data_dir=DIR]
Expected: the InfoNCE loss falls from ln(4097) ~ 8.3; the kNN monitor on CIFAR-10 test climbs
towards ~80% (MoCo v2 ResNet-18 on CIFAR-10). Steal it with
  python -m stolen_jax.main --config=configs/steal_cifar10.py \
      --config.steal.target=workdir/pretrain_moco_cifar10/pretrain
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pretrain")
  config.pretrain = defaults.pretrain_block()
  config.pretrain.method = "moco"
  return config
