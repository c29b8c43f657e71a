"""The provider's shadow stolen encoder for feature poisoning (§VII-C): Algorithm 1 on the
provider's own data with the attacker's settings, trained once as its own keyed stage to
anticipate the attacker (``defenses.poison`` perturbs the answers away from it).

It imports the attacker's trainer (the provider runs the same algorithm), so the registry
imports this module only when a poisoning defense is built."""

import time

import jax
from absl import logging

from stolen_jax import augment as augment_lib
from stolen_jax import features, pretrain, stages
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError
from stolen_jax.steal.settings import stolenencoder_settings
from stolen_jax.steal.trainer import train_encoder
from stolen_jax.targets import Target

# The attacker's settings the shadow never reads: it trains on the provider's data, not the
# attacker's surrogate set, so cells that differ only in these share one shadow.
UNUSED_ATTACK_SETTINGS = ("surrogate", "surrogate_split", "surrogate_size", "eval_heldout",
                          "heldout_split")


def _used(attack: dict) -> dict:
  """The attacker's settings less those the shadow never reads."""
  return {k: v for k, v in attack.items() if k not in UNUSED_ATTACK_SETTINGS}


def _without_unused(settings: dict) -> dict:
  """A shadow stage's recorded settings as today's key holds them (older keys also held the
  attacker's surrogate settings)."""
  if isinstance(settings.get("attack"), dict):
    settings = {**settings, "attack": _used(settings["attack"])}
  return settings


def shadow_settings(attacker, dataset: str, split: str, num, seed: int) -> dict:
  """The shadow stage's key: the StolenEncoder settings it trains with (less those it never
  reads), the provider's data and the seed."""
  return {"attack": _used(stolenencoder_settings(attacker)), "dataset": dataset,
          "split": split, "num_examples": num, "seed": seed}


def train_shadow(config, workdir: str, target: Target, mesh) -> dict:
  """The provider's shadow stolen encoder f'_s for feature poisoning (§VII-C): Algorithm 1
  on the provider's own pretraining data with the attacker's settings, trained once (its own
  keyed stage) and reused. Returns what ``defenses.poison`` needs."""
  cfg = config.steal
  shadow_cfg = config.defense.shadow
  pre = config.get("pretrain")
  dataset = shadow_cfg.dataset or (pre.dataset if pre is not None else target.meta.get("dataset"))
  if not dataset:
    raise ConfigError("defense 'poison': set defense.shadow.dataset (the provider's data)")
  split = shadow_cfg.split
  num = shadow_cfg.num_examples if shadow_cfg.num_examples is not None else (
      pre.num_examples if pre is not None and not shadow_cfg.dataset else None)
  # The provider anticipates StolenEncoder with the attacker's settings, whatever the attack.
  attacker = cfg.copy_and_resolve_references()
  with attacker.unlocked():
    attacker.epochs = shadow_cfg.epochs or cfg.epochs
    attacker.batch_size = shadow_cfg.get("batch_size") or cfg.batch_size
    if "attack" in attacker:
      attacker.attack = "stolenencoder"
  settings = shadow_settings(attacker, dataset, split, num, config.seed)
  upstream = {"target": target.meta["fingerprint"]}
  stage = stages.finished_equivalent(workdir, "shadow", settings, upstream, _without_unused)
  if stage is not None:
    logging.info("shadow: reusing %s (an older key that also held the attacker's surrogate "
                 "settings, which the shadow does not read)", stage.dir)
  else:
    stage = stages.open_stage(workdir, "shadow", settings, upstream=upstream,
                              strict=config.get("strict_stages", False))
  if stage.completed() is None:
    with stage.claimed() as mine:  # Another process on this workdir may be training it.
      if mine:
        _train_shadow(stage, attacker, target, dataset, split, num, shadow_cfg, config, mesh)
  shadow_fn, _ = features.restore_features_fn(stage.dir, mesh)
  augment = augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))
  return {"features_fn": shadow_fn,
          "augment": jax.jit(augment.per_key), "distance": cfg.distance,
          "lambda_": float(cfg.lambda_), "normalize": bool(cfg.normalize_features),
          "stage_dir": stage.dir, "stage_key": stage.key}


def _train_shadow(stage, attacker, target, dataset, split, num, shadow_cfg, config, mesh):
  """Trains the provider's shadow stolen encoder into ``stage`` (on the provider's data)."""
  data = sources.load(dataset, split, image_size=attacker.image_size, num_examples=num,
                      seed=config.seed + 11,
                      data_dir=shadow_cfg.get("data_dir") or attacker.data_dir)
  logging.info("shadow: training the provider's shadow stolen encoder on %d images of %s",
               len(data), dataset)
  t0 = time.perf_counter()
  result, _ = train_encoder(attacker, data.images, target.features_fn(data.images), stage.dir,
                            mesh, config.seed + 5, name="shadow")
  stage.write_summary({"complete": True, "dataset": f"{dataset}:{split}",
                       "num_images": len(data), "epochs": attacker.epochs,
                       "train_s": round(time.perf_counter() - t0, 2),
                       "final_loss": result.history[-1]["loss"] if result.history else None})
