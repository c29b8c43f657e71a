"""Training throughput of the pretrain (SimCLR) or steal step for any config, CPU or GPU/TPU.

  python bench/throughput.py --config=configs/pretrain_simclr_cifar10.py --stage=pretrain
  python bench/throughput.py --config=configs/steal_cifar10.py --stage=steal --steps=20
  python bench/throughput.py --config=configs/pretrain_moco_cifar10.py --stage=pretrain
  python bench/throughput.py --config=configs/demo.py --stage=steal --config.steal.arch=vgg19_bn
  python bench/throughput.py --config=configs/steal_cifar10.py --stage=probe --config.steal.arch=densenet121

Runs the trainer's own jitted step (the same ``make_trainer`` the jobs use) on random
uint8 data kept on device, data-parallel over every device, and prints: compile seconds,
ms/step, steps/s, images/s (every forward view counted: 2 per example for SimCLR and for
the steal with λ>0) and peak device memory. For the steal it also prints the official
PyTorch release's figures measured on a 2-core CPU (the project's reference notes).
``--stage=probe`` times the encoder's forward (feature extraction, images/s) for any
``--config.steal.arch`` and the downstream MLP's training (epochs/s).
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

import functools  # noqa: E402

from stolen_jax import features, models, optim, parallel, pretrain, probe, runtime, steal, train_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_STAGE = flags.DEFINE_enum("stage", "pretrain", ["pretrain", "steal", "probe"],
                           "Which train step; 'probe' times feature extraction (forward) with "
                           "the steal block's encoder and the downstream MLP.")
_PROBE_IMAGES = flags.DEFINE_integer("probe_images", 4096, "Images for the probe benchmark.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after one warm-up step).")
_DISPATCH = flags.DEFINE_integer("steps_per_dispatch", 0, "Steps per jit call (0: auto).")
_PER_STEP = flags.DEFINE_bool("per_step", True, "Also time each dispatch alone (min, median).")

# Official PyTorch release, 2-core x86 CPU, batch 64 (reference notes): s/step.
# Superseded as a bar by bench/cpu_parity.sh, which times the same step in PyTorch side by side.
REFERENCE_CPU = {"resnet34, lambda=20": 10.4, "resnet34, lambda=0": 5.0, "resnet18, lambda=20": 5.0,
                 "small resnet (16-32-64-128, 1 block/stage), lambda=20": 0.37}


def peak_memory_mb() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  out = {"host_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  if "peak_bytes_in_use" in stats:
    out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2 ** 20
  return out


def bench_probe(config, mesh) -> dict:
  """Feature extraction (encoder forward, eval mode) images/s and MLP probe epochs/s."""
  cfg, probe_cfg = config.steal, config.probe
  encoder = models.get(cfg.arch, width=cfg.width, dtype=cfg.dtype)
  n = _PROBE_IMAGES.value
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
  variables = jax.jit(encoder.init)(jax.random.PRNGKey(0), jnp.zeros((1, cfg.image_size, cfg.image_size, 3)))
  fn = features.make_feature_fn(encoder)
  t0 = time.perf_counter()
  feats = features.extract(fn, variables, images[:probe_cfg.feature_batch_size], mesh,
                           probe_cfg.feature_batch_size)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  feats = features.extract(fn, variables, images, mesh, probe_cfg.feature_batch_size)
  extract_s = time.perf_counter() - t0
  labels = rng.integers(0, 10, n).astype(np.int32)
  model = probe.MLPClassifier(10, tuple(probe_cfg.hidden), probe_cfg.dropout)
  batch = min(probe_cfg.batch_size, n)
  tx = optim.make_optimizer(probe_cfg)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, feats.shape[1])), mesh)
  data = {"features": parallel.put_replicated(feats, mesh), "labels": parallel.put_replicated(labels, mesh)}
  spe = n // batch
  k = train_lib.largest_divisor_at_most(spe, train_lib.default_steps_per_dispatch(_DISPATCH.value))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS))
  epochs = [train_lib.epoch_permutation(0, e, n, batch).reshape(-1, k, batch) for e in range(4)]
  shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  step = functools.partial(probe.probe_step, model=model, tx=tx)
  run = train_lib.make_chunk_fn(step, shardings, mesh).lower(state, data, jax.device_put(epochs[0][0], sharding)).compile()
  for chunk in epochs[0]:  # Warm-up epoch.
    state, m = run(state, data, jax.device_put(chunk, sharding))
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for idx in epochs[1:]:
    for chunk in idx:
      state, m = run(state, data, jax.device_put(chunk, sharding))
  jax.block_until_ready(m)
  mlp_s = time.perf_counter() - t0
  return {"stage": "probe", "arch": cfg.arch, "width": cfg.width, "image_size": cfg.image_size,
          "devices": mesh.size, "backend": jax.default_backend(), "images": n,
          "extract_compile_s": round(compile_s, 2), "extract_images_per_s": round(n / extract_s, 1),
          "feature_dim": int(feats.shape[1]), "mlp_batch_size": batch,
          "mlp_epochs_per_s": round(3 / mlp_s, 2), "mlp_steps_per_s": round(3 * spe / mlp_s, 1),
          **{k2: round(v, 1) for k2, v in peak_memory_mb().items()}}


def main(argv):
  del argv
  runtime.enable_compilation_cache()
  config = _CONFIG.value
  if _STAGE.value == "probe":
    print(json.dumps(bench_probe(config, parallel.make_mesh())))
    return
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
  # Each dispatch timed on its own (blocking on its result) for min and median; the mean is
  # the whole loop's time, which on an accelerator hides the host between dispatches.
  per_dispatch = []
  t0 = time.perf_counter()
  for i in idx[1:]:
    t_dispatch = time.perf_counter()
    state, m = run(state, data, i)
    if _PER_STEP.value:
      jax.block_until_ready(m)
      per_dispatch.append((time.perf_counter() - t_dispatch) / k)
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
  if per_dispatch:
    result.update(ms_per_step_min=round(1000 * min(per_dispatch), 2),
                  ms_per_step_median=round(1000 * float(np.median(per_dispatch)), 2))
  if _STAGE.value == "steal":
    result["lambda"] = float(cfg.lambda_)
  print(json.dumps(result))
  if _STAGE.value == "steal":
    print("official PyTorch release, 2-core CPU, batch 64 (s/step):",
          json.dumps(REFERENCE_CPU))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
