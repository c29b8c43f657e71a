"""``job='watermark'``: a victim encoder fine-tuned to carry a secret watermark task
(SSLGuard-style, Cong et al., CCS 2022), its own keyed stage ``watermark/<key>``.

The task is the answer watermark's (``defenses.answer_watermark``) moved into the weights: on
the victim's private data, the encoder is fine-tuned from its own weights (``steal.trainer``
with ``init_variables``) to answer f(x) pulled toward a secret direction t by the image's
degree of a secret trigger colour — natural images a little, images tinted toward it
fully, images tinted away from it not at all — and its own features elsewhere. So the
watermark is in the encoder whatever API serves it, and a copy regressed
onto its answers learns the pull as it learns the rest. The key (``watermark.seed``) is not
stored: the stage records its hash, which ``verify.watermark_seed`` must match.

What it costs the victim (its downstream TA) is what a probe of the stage measures; its
summary records the features' agreement with the original on held-out images.
"""

import contextlib
import copy
import hashlib
import io
import os
import time

import numpy as np

from stolen_jax import checkpoint, defaults, features, parallel, stages
from stolen_jax.data import sources
from stolen_jax.defenses import answer_watermark as mark
from stolen_jax.errors import ConfigError
from stolen_jax.verify.parties import recorded_training_data


def key_hash(seed: int) -> str:
  """What the stage records of the key."""
  return hashlib.sha256(f"stolen_jax-watermark-{int(seed)}".encode()).hexdigest()[:16]


def mark_settings(cfg) -> dict:
  """The watermark's public parameters (the answer watermark's, less the key)."""
  return {"strength": float(cfg.strength), "low": float(cfg.low), "high": float(cfg.high)}


def validate(cfg) -> None:
  """One ConfigError for a bad ``watermark`` setting (the victim is checked when the job
  runs: a pipeline names it itself)."""
  mark._validate(_as_defense(cfg))
  if not 0 < float(cfg.stamped_share) <= 0.5:
    raise ConfigError(f"watermark.stamped_share={cfg.stamped_share} must be in (0, 0.5]")
  for key in ("epochs", "batch_size"):
    if not isinstance(cfg[key], int) or cfg[key] < 1:
      raise ConfigError(f"watermark.{key}={cfg[key]!r} must be an integer >= 1")


def _as_defense(cfg):
  import ml_collections
  return ml_collections.ConfigDict({"name": "answer_watermark", "watermark": {
      "seed": cfg.seed, "strength": cfg.strength, "low": cfg.low, "high": cfg.high}})


def _training_set(cfg, recorded, size):
  """(its data settings, the victim's private images followed by copies of a share of them
  tinted toward the trigger colour and as many tinted away from it, that share's size)."""
  if cfg.dataset:
    data = {"dataset": cfg.dataset, "split": cfg.split, "num_examples": cfg.num_examples,
            "seed": int(cfg.data_seed), "image_size": size}
  elif recorded is not None:
    data = dict(recorded)
  else:
    raise ConfigError("watermark.dataset is required: this victim does not record its "
                      "training data")
  images = sources.load(data["dataset"], data["split"], image_size=size,
                        num_examples=data["num_examples"], seed=int(data["seed"] or 0),
                        data_dir=cfg.data_dir).images
  m = int(len(images) * float(cfg.stamped_share))
  c = images.shape[-1]
  colour, tint = mark.trigger(int(cfg.seed), c), float(cfg.tint)
  stamped = [mark.stamp(images[:m], colour, tint), mark.stamp(images[m:2 * m], -colour, tint)]
  return data, np.concatenate([images] + stamped), m


def run(config, workdir: str) -> dict:
  """Trains (or restores) the watermarked victim; prints its path."""
  from stolen_jax.steal.trainer import train_encoder
  cfg = config.watermark
  validate(cfg)
  if not cfg.victim:
    raise ConfigError("watermark.victim is required: the encoder checkpoint to watermark")
  mesh = parallel.make_mesh()
  encoder, variables, meta = checkpoint.restore_encoder(cfg.victim)
  size = int(meta["image_size"])
  data, images, stamped = _training_set(cfg, recorded_training_data(cfg.victim), size)
  settings = {**{k: data[k] for k in ("dataset", "split", "num_examples", "image_size", "seed")},
              "key": key_hash(cfg.seed), **mark_settings(cfg), "tint": float(cfg.tint),
              "stamped_share": float(cfg.stamped_share), "epochs": int(cfg.epochs),
              "batch_size": int(cfg.batch_size), "lr": float(cfg.lr)}
  stage = stages.open_stage(workdir, "watermark", settings, {"victim": meta["fingerprint"]},
                            strict=config.get("strict_stages", False))
  done, original = stage.completed(), None
  if done is None:
    with stage.claimed() as mine:
      if mine:
        original = _train(stage, cfg, config, encoder, variables, meta, images, mesh,
                          train_encoder)
      done = stage.completed()
  if "stamped_pull" not in done or done.get("stamped") != 2 * stamped:
    # Written before its figures were measured on the right rows (or not yet): measured now
    # from the stage's weights, so a restored stage never reports stale figures.
    done = _measure(stage, cfg, encoder, variables, images, stamped, mesh, done, original)
  print(f"watermarked victim: {stage.dir} (agreement with the original on its data: cos "
        f"{done['cos_to_original']:.3f}; the key's pull on stamped images: "
        f"{done['stamped_pull']:.3f})")
  return {**done, "stage_dir": stage.dir}


def watermarked_target(config, workdir: str, target_path: str) -> str:
  """In a pipeline (``watermark.enabled``): ``target_path`` watermarked (its stage)."""
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.watermark.victim = target_path
  with contextlib.redirect_stdout(io.StringIO()):
    return run(cfg, workdir)["stage_dir"]


def _train(stage, cfg, config, encoder, variables, meta, images, mesh, train_encoder):
  """Fine-tunes the victim into ``stage``; returns the original's features of ``images``."""
  t0 = time.perf_counter()
  fn = features.make_feature_fn(encoder)
  original = features.extract(fn, variables, images, mesh)
  s = {"seed": int(cfg.seed), **mark_settings(cfg)}
  targets = mark.watermark(original, images, s)
  steal_cfg = defaults.steal_block()
  with steal_cfg.unlocked():
    for k in ("arch", "width", "dtype", "image_size"):
      steal_cfg[k] = meta[k] if k != "width" else float(meta.get("width", 1.0))
    steal_cfg.epochs, steal_cfg.batch_size, steal_cfg.lr = cfg.epochs, cfg.batch_size, cfg.lr
    steal_cfg.optimizer, steal_cfg.weight_decay, steal_cfg.lambda_ = "adam", 0.0, 0.0
    steal_cfg.batch_size = min(steal_cfg.batch_size, len(images))
  result, _ = train_encoder(steal_cfg, images, targets, stage.dir, mesh, int(config.seed) + 17,
                            init_variables=variables, name="watermark",
                            watermark={**mark_settings(cfg), "key": key_hash(cfg.seed)},
                            victim=meta["fingerprint"])
  stage.write_summary({
      "complete": True, "victim": os.path.abspath(cfg.victim) if os.path.exists(cfg.victim)
      else cfg.victim, "final_loss": result.history[-1]["loss"] if result.history else None,
      "train_s": round(time.perf_counter() - t0, 2)})
  return original


def _measure(stage, cfg, encoder, variables, images, m: int, mesh, summary: dict,
             original=None) -> dict:
  """The watermarked encoder's agreement with the original on the private images, and its
  pull toward the secret direction on the images tinted toward the trigger colour against
  those tinted away (``images``: private, then m of each), added to ``summary``."""
  n = len(images) - 2 * m
  if original is None:
    original = features.extract(features.make_feature_fn(encoder), variables, images, mesh)
  marked_fn, _ = features.restore_features_fn(stage.dir, mesh)
  after = np.asarray(marked_fn(images))
  cos = np.sum(after * original, 1) / np.maximum(
      np.linalg.norm(after, axis=1) * np.linalg.norm(original, axis=1), 1e-12)
  t = mark.target_direction(int(cfg.seed), after.shape[1])
  unit = after / np.maximum(np.linalg.norm(after, axis=1, keepdims=True), 1e-12)
  pull = float(np.mean(unit[n:n + m] @ t) - np.mean(unit[n + m:] @ t))
  return stage.write_summary({**summary, "num_images": int(n), "stamped": int(2 * m),
                              "cos_to_original": float(np.mean(cos[:n])),
                              "stamped_pull": pull})
