"""The tiny pipeline of the tests as a config file (for CLI and multi-process tests):
  python -m stolen_jax.main --config=tests/configs/tiny_pipeline.py --workdir=DIR
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pipeline")
  p = config.pretrain = defaults.pretrain_block()
  p.dataset, p.num_examples, p.image_size = "embedded:shapes", 32, 16
  p.arch, p.width, p.proj_hidden, p.proj_dim = "resnet10", 0.0625, 32, 16
  p.epochs, p.batch_size, p.lr = 2, 16, 1e-2
  p.knn.enabled = False
  p.checkpoint_every_epochs = 1
  s = config.steal = defaults.steal_block()
  s.surrogate, s.surrogate_split, s.heldout_split = "embedded:textures", "train", "test"
  s.surrogate_size, s.image_size = 32, 16
  s.arch, s.width = "resnet10", 0.0625
  s.epochs, s.batch_size, s.lr, s.query_batch_size = 2, 16, 1e-2, 16
  s.optimizer, s.weight_decay = "adam", 0.0  # Tuned with Adam (mechanics, not quality).
  s.eval_heldout = 0
  s.checkpoint_every_epochs = 1
  q = config.probe = defaults.probe_block()
  q.datasets = "embedded:glyphs"
  q.num_train, q.num_test, q.image_size = 64, 32, 16
  q.hidden, q.epochs, q.batch_size = (32, 16), 3, 32
  from stolen_jax import sweep  # For --config.job=sweep (bench/sweep_scaling.py).
  config.sweep = sweep.sweep_block()
  return config
