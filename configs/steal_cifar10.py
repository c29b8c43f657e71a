"""Table II's CIFAR-10 row: the paper's whole attack with its default settings (§V-A).

Target: SimCLR ResNet-18 pre-trained on CIFAR-10 train (configs/pretrain_simclr_cifar10.py's
settings; give --config.steal.target=PATH to reuse a trained one). Attacker: 2,500 (5% of
50,000) ImageNet images at 32x32, one query each; ResNet-34 stolen encoder, ℓ2, λ=20,
A = flip + jitter + grayscale, e=100, S=64, SGD (momentum 0.9, weight decay 5e-4) at lr 0.064
on the batch-mean loss — the official code's step; chosen by docs/results/paper_cpu.md —
features L2-normalised (the official code's choice; --config.steal.normalize_features=False
for the paper's text).
Probes: MLP 512-256, Adam 1e-4, batch 256, 500 epochs on GTSRB, MNIST, Fashion-MNIST, SVHN.

Run (TFDS datasets prepared in DIR: cifar10, imagenet_resized/32x32, mnist, fashion_mnist,
svhn_cropped, and gtsrb from its manual download, see README):
  python -m stolen_jax.main --config=configs/steal_cifar10.py \
      --config.pretrain.data_dir=DIR --config.steal.data_dir=DIR --config.probe.data_dir=DIR
Expected (paper, Table II, CIFAR-10 row): TA/SA around GTSRB 81/76, MNIST 99/98,
Fashion-MNIST 90/88, SVHN 73/68 (%), #queries 2,500.
Variants: --config.steal.lambda_=0 (w/o-aug), --config.steal.variant=query_aug,
--config.steal.variant=pretrain_encoder.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pipeline")
  config.pretrain = defaults.pretrain_block()
  config.steal = defaults.steal_block()
  config.probe = defaults.probe_block()
  return config
