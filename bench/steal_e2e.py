"""The default steal end to end: Algorithm 1's training loop on |D| images for e epochs.

  python bench/steal_e2e.py --config=configs/steal_cifar10.py                 # 2,500 x 100 epochs
  python bench/steal_e2e.py --config=configs/steal_cifar10.py --images=256 --config.steal.epochs=2 \\
      --config.steal.width=0.0625                                              # a CPU smoke run

Runs ``steal.train_encoder``, the same function the steal job runs: the device-resident
surrogate set, scan dispatch, one host sync per epoch, Orbax checkpoints and the final save.
It uses random uint8 images and random target features of the target's dimension, so no
dataset and no target are needed. The timings do not depend on the pixel values.

Prints one JSON line: compile s, train s (excluding compilation), steps, steps/s and images/s.
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from stolen_jax import parallel, runtime, steal  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_IMAGES = flags.DEFINE_integer("images", 2500, "Surrogate images |D| (the paper's 5% of CIFAR-10).")
_DIM = flags.DEFINE_integer("target_dim", 512, "Target feature dimension.")


def main(argv):
  del argv
  runtime.enable_compilation_cache()
  cfg = _CONFIG.value.steal
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (_IMAGES.value, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
  features = rng.normal(size=(_IMAGES.value, _DIM.value)).astype(np.float32)
  mesh = parallel.make_mesh()
  with tempfile.TemporaryDirectory() as stage_dir:
    t0 = time.perf_counter()
    result, _ = steal.train_encoder(cfg, images, features, stage_dir, mesh, seed=0)
    wall = time.perf_counter() - t0
  steps = int(result.state.step)
  print(json.dumps({
      "bench": "steal end to end", "arch": cfg.arch, "width": cfg.width, "dtype": cfg.dtype,
      "lambda": float(cfg.lambda_), "images": _IMAGES.value, "epochs": cfg.epochs,
      "batch_size": cfg.batch_size, "backend": jax.default_backend(), "devices": mesh.size,
      "steps": steps, "compile_s": round(result.compile_s, 2), "train_s": round(result.train_s, 2),
      "wall_s": round(wall, 2), "steps_per_s": round(result.steps_per_s, 2),
      "ms_per_step": round(1000 / result.steps_per_s, 3) if result.steps_per_s else None,
      "images_per_s": round(result.images_per_s, 1)}))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
