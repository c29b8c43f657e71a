"""K stacked steal cells (one vmapped program) vs one cell: time per step.

  python bench/stacked.py --arch=resnet10 --width=0.25 --cells=4 --steps=5
  python bench/stacked.py --arch=resnet34 --width=1.0 --cells=8 --steps=20   # on a GPU

Prints s/step of a single steal step and of the K-cell stacked step (batch 64, λ>0, shared
batch and augmentation pipeline), and the ratio: K cells in well under K× the time of one
is the point of stacking (expected on accelerators, where a batch-64 step leaves the chip idle).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from stolen_jax import defaults, parallel, steal, train_lib  # noqa: E402

_ARCH = flags.DEFINE_string("arch", "resnet10", "Stolen encoder architecture.")
_WIDTH = flags.DEFINE_float("width", 0.25, "Width multiplier.")
_CELLS = flags.DEFINE_integer("cells", 4, "Stacked cells K.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps (after a warm-up).")


def _time(step, state, batch, n):
  state, m = step(state, batch)  # Warm-up (compile).
  jax.block_until_ready(m)
  times = []
  for _ in range(n):
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(_):
  cfg = defaults.steal_block()
  cfg.arch, cfg.width = _ARCH.value, _WIDTH.value
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  k = _CELLS.value
  lambdas = [float(x) for x in np.linspace(1, 30, k)]
  model, tx, stacked_step, init = steal.make_stacked_trainer(cfg, lambdas, 100)
  batch = {"images": jnp.asarray(rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)),
           "target": jnp.asarray(rng.normal(size=(64, model.encoder.feature_dim)).astype(np.float32))}
  sample = jnp.zeros((1, 32, 32, 3))
  _, _, single = steal.make_trainer(cfg, 100)
  one = _time(jax.jit(single, donate_argnums=0),
              train_lib.create_state(model, tx, jax.random.PRNGKey(0), sample, mesh), batch,
              _STEPS.value)
  many = _time(jax.jit(stacked_step, donate_argnums=0),
               init([jax.random.PRNGKey(i) for i in range(k)], sample, mesh), batch, _STEPS.value)
  print(f"{cfg.arch} width {cfg.width}, batch 64, {jax.devices()[0].platform}: one cell "
        f"{one:.4f} s/step; {k} stacked cells {many:.4f} s/step = {many / one:.2f}x one "
        f"({many / (k * one):.2f} of {k} separate runs)")


if __name__ == "__main__":
  app.run(main)
