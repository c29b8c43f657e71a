"""One pass vs two passes for the steal step's per-view BatchNorm (``bn_passes='separate'``).

  python bench/bn_passes.py --arch=resnet10 --width=0.25 --steps=20      # the small ResNet
  python bench/bn_passes.py --arch=resnet34 --width=1.0 --steps=5        # the paper's

Times the whole jitted steal step (batch 64, λ=20, on-device augmentation) both ways,
alternating one step of each so that machine load hits both alike, and prints min and
median s/step. Both compute the same update (tests/test_steal.py).
"""

import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from stolen_jax import augment, defaults, optim, parallel, pretrain, steal, train_lib  # noqa: E402

_ARCH = flags.DEFINE_string("arch", "resnet10", "Stolen encoder architecture.")
_WIDTH = flags.DEFINE_float("width", 0.25, "Width multiplier.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps of each (after a warm-up).")
_BATCH = flags.DEFINE_integer("batch", 64, "Batch size.")


def main(_):
  cfg = defaults.steal_block()
  cfg.arch, cfg.width, cfg.batch_size = _ARCH.value, _WIDTH.value, _BATCH.value
  mesh = parallel.make_mesh()
  model = steal.build_stolen_model(cfg)
  tx = optim.make_optimizer(cfg)
  rng = np.random.default_rng(0)
  batch = {"images": jnp.asarray(rng.integers(0, 255, (cfg.batch_size, 32, 32, 3), dtype=np.uint8)),
           "target": jnp.asarray(rng.normal(size=(cfg.batch_size, model.encoder.feature_dim)).astype(np.float32))}
  steps, states = {}, {}
  for one_pass in (True, False):
    steps[one_pass] = jax.jit(functools.partial(
        steal.steal_step, model=model, tx=tx, lambda_=20.0, distance="l2", reduction="mean",
        normalize=True, bn_passes="separate", one_pass=one_pass,
        augment=augment.make_augment(cfg.augment, pretrain.augment_params(cfg))), donate_argnums=0)
    states[one_pass] = train_lib.create_state(model, tx, jax.random.PRNGKey(0),
                                              jnp.zeros((1, 32, 32, 3)), mesh)
    t0 = time.perf_counter()
    states[one_pass], m = steps[one_pass](states[one_pass], batch)
    jax.block_until_ready(m)
    print(f"one_pass={one_pass}: compile + first step {time.perf_counter() - t0:.2f} s")
  times = {True: [], False: []}
  for _ in range(_STEPS.value):
    for one_pass in (True, False):
      t0 = time.perf_counter()
      states[one_pass], m = steps[one_pass](states[one_pass], batch)
      jax.block_until_ready(m)
      times[one_pass].append(time.perf_counter() - t0)
  print(f"{cfg.arch} width {cfg.width}, batch {cfg.batch_size}, λ=20, {jax.devices()[0].platform}:")
  for one_pass, t in times.items():
    print(f"  {'one pass (grouped BN)' if one_pass else 'two passes':>22}: min {min(t):.4f} s, "
          f"median {float(np.median(t)):.4f} s per step ({len(t)} steps)")


if __name__ == "__main__":
  app.run(main)
