"""Evaluate any encoder checkpoint (target or stolen) with the paper's downstream probes.

Run:
  python -m stolen_jax.main --config=configs/probe.py --config.probe.encoder=PATH \
      [--config.probe.datasets=tfds:mnist,tfds:svhn_cropped] [--config.probe.data_dir=DIR]
PATH is an Orbax checkpoint directory written by pretrain or steal (e.g.
workdir/demo/steal/checkpoints). Prints the test accuracy per dataset.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("probe")
  config.probe = defaults.probe_block()
  return config
