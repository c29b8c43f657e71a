"""Demo on embedded data (no download): SimCLR pretraining of a small ResNet-18 on the
procedurally drawn ``shapes`` dataset, with a kNN monitor on its test split.

Run:
  python -m stolen_jax.main --config=configs/demo.py
Expected (2 CPU cores, about 2-3 minutes): NT-Xent falls over the epochs and the kNN
accuracy on 10 shape classes rises well above chance (10%) and above its random-init value,
printed at the end and written to workdir/demo/pretrain/summary.json.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("pretrain")
  p = config.pretrain = defaults.pretrain_block()
  p.dataset = "embedded:shapes"
  p.num_examples = 2048
  p.arch, p.width = "resnet18", 0.125
  p.epochs, p.batch_size = 8, 128
  p.knn.num_train, p.knn.num_test, p.knn.every_epochs = 2000, 500, 4
  p.checkpoint_every_epochs = 4
  p.log_every_steps = 8
  return config
