"""Table VIII: the attacker's augmentation set A — all 16 subsets of RandomResizedCrop (1),
RandomHorizontalFlip (2), ColorJitter (3), RandomGrayscale (4).

Run: python -m stolen_jax.main --config=configs/paper/table8_augment.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table VIII, CIFAR-10, GTSRB SA): 51.50 with no augmentation, 71.47–79.94 with any
subset: the attacker need not know the target's augmentations.
"""

from stolen_jax import defaults, sweep

SUBSETS = ("none", "crop", "flip", "jitter", "grayscale", "crop+flip", "crop+jitter",
           "crop+grayscale", "flip+jitter", "flip+grayscale", "jitter+grayscale",
           "crop+flip+jitter", "crop+flip+grayscale", "crop+jitter+grayscale",
           "flip+jitter+grayscale", "crop+flip+jitter+grayscale")
PAPER_SA = (51.50, 74.82, 76.86, 78.47, 76.15, 77.96, 76.68, 71.47, 78.98, 77.70, 77.15, 79.94,
            77.18, 76.00, 79.43, 78.97)


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "steal.augment=" + ",".join(SUBSETS)
  config.sweep.paper = "; ".join(f"{s}:80.67/{sa}" for s, sa in zip(SUBSETS, PAPER_SA))
  config.sweep.note = "paper: Table VIII (CIFAR-10 target, GTSRB downstream)."
  return config
