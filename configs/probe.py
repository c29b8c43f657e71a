"""Evaluate any encoder (target or stolen) with the paper's downstream probes.

Run:
  python -m stolen_jax.main --config=configs/probe.py --config.probe.encoder=PATH \\
      [--config.probe.datasets=tfds:mnist,tfds:svhn_cropped] [--config.probe.data_dir=DIR]
PATH is what steal.target takes: a stage or checkpoint directory (workdir/demo/steal holds
one keyed stage, workdir/demo/steal/<key> names one), import:NAME:WEIGHTS, or
callable:MODULE:FUNCTION. The images are loaded at the encoder's own size (its record's
image_size; 32 px for imported and callable encoders) unless probe.image_size is given.
Prints each dataset's test accuracy with the settings it was measured under.

The demo's stolen encoder, probed exactly as the demo's table probes it (prints its SA):
  python -m stolen_jax.main --config=configs/probe.py --config.probe.encoder=workdir/demo/steal \\
      --config.probe.datasets=embedded:glyphs,embedded:textures --config.probe.num_train=5000 \\
      --config.probe.num_test=1000 --config.probe.epochs=200 --config.probe.lr=1e-3
"""

from ml_collections import config_dict

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("probe")
  config.probe = defaults.probe_block()
  config.probe.image_size = config_dict.placeholder(int)  # The encoder's own size.
  return config
