"""The whole attack on embedded data (no download), sized for a laptop CPU.

Run:
  python -m stolen_jax.main --config=configs/demo.py
What it does (workdir/demo/): pre-trains a SimCLR target (ResNet-18, width 1/8) on the
procedurally drawn ``shapes`` set; an attacker with 512 ``textures`` images (a different-
looking surrogate set) queries it once per image and steals a ResNet-34 (width 1/8) with
the paper's loss (ℓ2, λ=20, flip+jitter+grayscale); MLP probes on the MNIST-like ``glyphs``
and on ``shapes`` give TA and SA.
Expected on 2 CPU cores: about 3-4 minutes (3m16s measured); the target's kNN accuracy on shapes rises
above its random-init value (~0.2 -> ~0.3, chance 0.1); TA and SA far above chance (10%),
#queries = 512, and results.md with the TA/SA table. A rerun restores every stage (0 new
queries) and prints the table in seconds.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pipeline")
  p = config.pretrain = defaults.pretrain_block()
  p.dataset, p.num_examples = "embedded:shapes", 2048
  p.arch, p.width = "resnet18", 0.125
  p.epochs, p.batch_size = 8, 128
  p.aug.crop_scale = (0.25, 1.0)  # Small images: very small crops miss the shape entirely.
  p.knn.num_train, p.knn.num_test, p.knn.k, p.knn.every_epochs = 2000, 500, 20, 4
  p.checkpoint_every_epochs, p.log_every_steps = 4, 8

  s = config.steal = defaults.steal_block()
  s.surrogate, s.surrogate_split, s.heldout_split = "embedded:textures", "train", "test"
  s.surrogate_size = 512
  s.arch, s.width = "resnet34", 0.125
  s.epochs = 15
  s.eval_heldout = 500
  s.checkpoint_every_epochs, s.log_every_steps = 5, 8

  q = config.probe = defaults.probe_block()
  q.datasets = "embedded:glyphs,embedded:shapes"
  q.num_train, q.num_test = 2000, 1000
  q.epochs = 100
  q.lr = 1e-3  # 100 epochs instead of the paper's 500: a larger step to converge in time.
  return config
