"""Does a bf16 steal reach the held-out fidelity of an fp32 steal? Steals in both dtypes over
several seeds against one target, and a table of held-out fidelity (mean ± std over seeds).

  DATA=(--config.pretrain.dataset=npz:../shared/datasets/cifar10.npz
        --config.pretrain.knn.dataset=npz:../shared/datasets/cifar10.npz
        --config.steal.surrogate=npz:../shared/datasets/tinyimagenet32.npz)
  python bench/bf16_fidelity.py --config=configs/paper/fig2_lambda.py:cpu \
      --workdir=workdir/paper_cpu --seeds=0,1,2 "${DATA[@]}"

The target is the config's pretraining stage in ``--workdir`` (trained there if it is not
yet). Each steal is an ordinary keyed steal stage (``steal.dtype`` is in its key), so a rerun
restores what is done. bf16 here means the encoders compute in bf16 with fp32 parameters,
optimizer state, losses and BatchNorm statistics (models/*: ``dtype``).
"""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from stolen_jax import parallel, pipeline, runtime, steal  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding (or to hold) the target.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Attack seeds (surrogate draw, init).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes to compare.")


def main(argv):
  del argv
  runtime.enable_compilation_cache()
  config = copy.deepcopy(_CONFIG.value)
  with config.unlocked():
    if config.target_seed is None:
      config.target_seed = config.seed
  mesh = parallel.make_mesh()
  target, _, _ = pipeline.ensure_target(config, _WORKDIR.value, mesh)
  rows = []
  for dtype in _DTYPES.value:
    runs = []
    for seed in _SEEDS.value:
      cfg = copy.deepcopy(config)
      with cfg.unlocked():
        cfg.seed = int(seed)
        cfg.steal.target = target
        cfg.steal.dtype = dtype
      s = steal.run(cfg, _WORKDIR.value, mesh)
      runs.append(s)
      print(json.dumps({"dtype": dtype, "seed": int(seed), "heldout": s["heldout"],
                        "final_loss": s.get("final_loss"), "train_s": s.get("train_s"),
                        "stage_dir": s["stage_dir"]}), flush=True)
    cos = [r["heldout"]["stolen_cosine"] for r in runs]
    l2 = [r["heldout"]["stolen_l2_normalized"] for r in runs]
    rows.append((dtype, np.mean(cos), np.std(cos, ddof=1) if len(cos) > 1 else 0.0,
                 np.mean(l2), np.std(l2, ddof=1) if len(l2) > 1 else 0.0,
                 runs[0]["heldout"]["random_cosine"], np.mean([r["train_s"] for r in runs])))
  cfg = config.steal
  print(f"\nheld-out fidelity to the target, {cfg.arch} x{cfg.width}, {cfg.surrogate_size} surrogate "
        f"images, {cfg.epochs} epochs, λ={cfg.lambda_}, seeds {','.join(_SEEDS.value)} (mean ± std)")
  print("| compute dtype | cosine(f_t, f_s) | ℓ2 of normalised features | random encoder cosine | train s |")
  print("|---|---|---|---|---|")
  for dtype, c, cs, l, ls, rc, t in rows:
    print(f"| {dtype} | {c:.4f} ± {cs:.4f} | {l:.4f} ± {ls:.4f} | {rc:.4f} | {t:.0f} |")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
