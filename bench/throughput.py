"""Training throughput of the pretrain (SimCLR) or steal step for any config, CPU or GPU/TPU.

  python bench/throughput.py --config=configs/pretrain_simclr_cifar10.py --stage=pretrain
  python bench/throughput.py --config=configs/steal_cifar10.py --stage=steal --steps=20
  python bench/throughput.py --config=configs/pretrain_moco_cifar10.py --stage=pretrain
  python bench/throughput.py --config=configs/demo.py --stage=steal --config.steal.arch=vgg19_bn

Runs the trainer's own jitted step (the same ``make_trainer`` the jobs use) on random
uint8 data kept on device, data-parallel over every device, and prints: compile seconds,
ms/step, steps/s, images/s (every forward view counted: 2 per example for SimCLR and for
the steal with λ>0) and peak device memory. For the steal it also prints the official
PyTorch release's figures measured on a 2-core CPU (shared/paper/reference-notes.md).
"""

import json
import os
import resource
import sys
import time

# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from stolen_jax import parallel, pretrain, runtime, steal, train_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_STAGE = flags.DEFINE_enum("stage", "pretrain", ["pretrain", "steal"], "Which train step.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after one warm-up step).")
_DISPATCH = flags.DEFINE_integer("steps_per_dispatch", 0, "Steps per jit call (0: auto).")

# Official PyTorch release, 2-core x86 CPU, batch 64 (reference notes): s/step.
REFERENCE_CPU = {"resnet34, lambda=20": 10.4, "resnet34, lambda=0": 5.0, "resnet18, lambda=20": 5.0,
                 "small resnet (16-32-64-128, 1 block/stage), lambda=20": 0.37}


def peak_memory_mb() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  out = {"host_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  if "peak_bytes_in_use" in stats:
    out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2 ** 20
  return out


def main(argv):
  del argv
  runtime.enable_compilation_cache()
  config = _CONFIG.value
  cfg = config.pretrain if _STAGE.value == "pretrain" else config.steal
  mesh = parallel.make_mesh()
  batch = cfg.batch_size
  rng = np.random.default_rng(0)
  n = batch * 4
  images = rng.integers(0, 255, (n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
  if _STAGE.value == "pretrain":
    model, tx, step_fn = pretrain.make_trainer(cfg, 1000)
    data = {"images": parallel.put_replicated(images, mesh)}
    views = 2
  else:
    model, tx, step_fn = steal.make_trainer(cfg, 1000)
    dim = model.encoder.feature_dim
    data = {"images": parallel.put_replicated(images, mesh),
            "target": parallel.put_replicated(rng.normal(size=(n, dim)).astype(np.float32), mesh)}
    views = 1 if cfg.lambda_ == 0 else 2
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  extra = pretrain.initial_extra(cfg, 0) if _STAGE.value == "pretrain" else None
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), sample, mesh, extra=extra)
  k = train_lib.default_steps_per_dispatch(_DISPATCH.value)
  steps = max(k, _STEPS.value - _STEPS.value % k)
  rows_needed = steps + k  # One warm-up chunk, then the timed steps.
  idx = np.concatenate([train_lib.epoch_permutation(0, e, n, batch)
                        for e in range(-(-rows_needed // (n // batch)))])
  idx = idx[:rows_needed].reshape(-1, k, batch)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  idx = [jax.device_put(i, sharding) for i in idx]
  t0 = time.perf_counter()
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  run = train_lib.make_chunk_fn(step_fn, shardings, mesh).lower(state, data, idx[0]).compile()
  compile_s = time.perf_counter() - t0
  state, m = run(state, data, idx[0])  # Warm-up.
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for i in idx[1:]:
    state, m = run(state, data, i)
  jax.block_until_ready(m)
  seconds = time.perf_counter() - t0
  timed = steps
  result = {
      "stage": _STAGE.value, "arch": cfg.arch, "width": cfg.width, "dtype": cfg.dtype,
      "image_size": cfg.image_size, "batch_size": batch, "devices": mesh.size,
      "backend": jax.default_backend(), "steps_per_dispatch": k, "compile_s": round(compile_s, 2),
      "ms_per_step": round(1000 * seconds / timed, 2), "steps_per_s": round(timed / seconds, 3),
      "images_per_s": round(timed * batch * views / seconds, 1),
      **{k2: round(v, 1) for k2, v in peak_memory_mb().items()},
  }
  if _STAGE.value == "steal":
    result["lambda"] = float(cfg.lambda_)
  print(json.dumps(result))
  if _STAGE.value == "steal":
    print("official PyTorch release, 2-core CPU, batch 64 (s/step):",
          json.dumps(REFERENCE_CPU))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
