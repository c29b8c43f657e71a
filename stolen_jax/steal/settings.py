"""A steal's settings: the surrogate set, the checks made before anything is paid, and what
goes into its stage key and summary (attack-aware, so StolenEncoder's keys are unchanged)."""

import numpy as np

from stolen_jax import attacks, augment as augment_lib, losses, stages
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError, choose

VARIANTS = ("stolenencoder", "query_aug", "pretrain_encoder")
# Settings only StolenEncoder reads: another attack's stage key leaves them out.
STOLENENCODER_KEYS = ("variant", "lambda_", "distance", "reduction", "normalize_features",
                      "bn_passes", "answer_scaling")
ANSWER_SCALINGS = ("none", "standardize")


def attack_of(cfg) -> attacks.Attack:
  """The registered attack ``cfg.attack`` names (StolenEncoder when the key is absent)."""
  return attacks.get(cfg.get("attack") or attacks.DEFAULT)


def is_stolenencoder(cfg) -> bool:
  """Whether the steal is StolenEncoder (Algorithm 1 or one of its variants)."""
  return attack_of(cfg).name == attacks.DEFAULT


def surrogate_count(size, target_meta: dict) -> int:
  """``size`` as a count (int) or, for a float in (0, 1], as that fraction of the target's
  pretraining-set size (the paper's 5% = 2,500 images for CIFAR-10)."""
  if isinstance(size, float) and 0 < size <= 1:
    if "num_images" not in target_meta:
      raise ConfigError("steal.surrogate_size is a fraction of the target's pretraining set, but "
                        "the target checkpoint does not record its size; give a count instead")
    return max(1, int(round(size * target_meta["num_images"])))
  if isinstance(size, (int, float)) and size >= 1 and float(size).is_integer():
    return int(size)
  raise ConfigError(f"steal.surrogate_size={size!r}: give a count >= 1 or a fraction in (0, 1]")


def load_surrogate(cfg, target_meta: dict, seed: int) -> sources.ImageSet:
  """The attacker's surrogate set D: a uniform random subset of ``cfg.surrogate``."""
  count = surrogate_count(cfg.surrogate_size, target_meta)
  return sources.load(cfg.surrogate, cfg.surrogate_split, image_size=cfg.image_size,
                      num_examples=count, seed=seed, data_dir=cfg.data_dir)


def query_views(cfg) -> int:
  """The attack's query plan: 0 = one answer per image; V = answers for V augmented views."""
  attack = attack_of(cfg)
  return attack.query_views(attacks.block_of(cfg, attack))


def attack_settings(cfg) -> dict:
  """The settings that define the attack, as recorded in summaries and results tables."""
  attack = attack_of(cfg)
  out = {"attack": attack.name, "stolen_arch": cfg.arch, "stolen_width": float(cfg.width),
         "augment": ",".join(augment_lib.parse_names(cfg.augment)), "epochs": cfg.epochs,
         "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr,
         "query_views": query_views(cfg)}
  if attack.name == attacks.DEFAULT:
    out.update(variant=cfg.variant, **{"lambda": float(cfg.lambda_)}, distance=cfg.distance,
               reduction=cfg.reduction, normalize_features=bool(cfg.normalize_features),
               bn_passes=cfg.bn_passes)
    if cfg.get("answer_scaling", "none") != "none":
      out["answer_scaling"] = cfg.answer_scaling
  else:
    out.update({f"{attack.name}.{k}": v for k, v in attacks.settings(cfg, attack).items()})
  return out


def _check_attack(cfg) -> None:
  attack = attack_of(cfg)
  if attack.name != attacks.DEFAULT and cfg.variant != "stolenencoder":
    raise ConfigError(f"steal.variant={cfg.variant!r} is a StolenEncoder variant; it does not "
                      f"apply to steal.attack={attack.name!r} (leave it 'stolenencoder')")
  block = attacks.block_of(cfg, attack)
  for key, default in attack.params.items():
    value = block.get(key)
    if isinstance(default, int) and not (isinstance(value, int) and value >= 1):
      raise ConfigError(f"steal.{attack.name}.{key}={value!r} must be an integer >= 1")
    if isinstance(default, float) and not (isinstance(value, (int, float)) and np.isfinite(value)
                                           and value > 0):
      raise ConfigError(f"steal.{attack.name}.{key}={value!r} must be a finite number > 0")


def validate_settings(cfg) -> None:
  """Checks the attack's names and values (before any stage runs or any query is paid)."""
  choose("steal.variant", cfg.variant, VARIANTS)
  _check_attack(cfg)
  choose("steal.distance", cfg.distance, losses.DISTANCES)
  choose("steal.reduction", cfg.reduction, losses.REDUCTIONS)
  choose("steal.bn_passes", cfg.bn_passes, ("separate", "joint"))
  if not np.isfinite(cfg.lambda_) or cfg.lambda_ < 0:
    raise ConfigError(f"steal.lambda_={cfg.lambda_} must be a finite number >= 0")
  choose("steal.recover", cfg.get("recover", "none"), ("none", "auto"))
  scaling = choose("steal.answer_scaling", cfg.get("answer_scaling", "none"), ANSWER_SCALINGS)
  if scaling != "none" and attack_of(cfg).name != attacks.DEFAULT:
    raise ConfigError(f"steal.answer_scaling={scaling!r} is a StolenEncoder option; "
                      f"steal.attack={attack_of(cfg).name!r} does not read it")
  sybils = cfg.get("sybils", 1)
  if not isinstance(sybils, int) or isinstance(sybils, bool) or not 1 <= sybils <= 64:
    raise ConfigError(f"steal.sybils={sybils!r} must be an integer in [1, 64] (accounts)")
  if sybils > 1 and (not isinstance(cfg.sybil_mapping, int) or cfg.sybil_mapping < 2):
    raise ConfigError(f"steal.sybil_mapping={cfg.sybil_mapping!r} must be an integer >= 2 "
                      "(images every account answers, to align its space)")
  for key in ("epochs", "batch_size", "query_batch_size", "image_size"):
    if not isinstance(cfg[key], int) or cfg[key] < 1:
      raise ConfigError(f"steal.{key}={cfg[key]!r} must be an integer >= 1")
  if not isinstance(cfg.eval_heldout, int) or cfg.eval_heldout < 0:
    raise ConfigError(f"steal.eval_heldout={cfg.eval_heldout!r} must be an integer >= 0")
  if cfg.query_budget is not None and cfg.query_budget < 0:
    raise ConfigError(f"steal.query_budget={cfg.query_budget} must be >= 0")
  if not np.isfinite(cfg.lr) or cfg.lr <= 0:
    raise ConfigError(f"steal.lr={cfg.lr} must be a finite number > 0")
  size = cfg.surrogate_size
  if not (isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0
          and (size <= 1 or float(size).is_integer())):
    raise ConfigError(f"steal.surrogate_size={size!r}: give a count >= 1 or a fraction in (0, 1]")
  if isinstance(size, (int, float)) and size >= 1 and size < cfg.batch_size:
    raise ConfigError(f"steal.surrogate_size={size} is smaller than steal.batch_size="
                      f"{cfg.batch_size}: not one training step per epoch")


def validate_for_run(cfg) -> None:
  """``validate_settings`` plus what a run needs: a target."""
  validate_settings(cfg)
  if not cfg.target:
    raise ConfigError("steal.target is required: the path of the target encoder's Orbax "
                      "checkpoint (e.g. <workdir>/pretrain)")


def stolenencoder_settings(cfg) -> dict:
  """The settings of ``cfg`` as a StolenEncoder steal reads them (the attack's name and the
  other attacks' blocks left out): the stage key every workdir made before attacks were
  registered carries, and the shadow encoder's."""
  # The sybil plan's keys only where it is used: single-account keys stay what they were.
  single = () if int(cfg.get("sybils", 1)) > 1 else ("sybils", "sybil_mapping")
  if cfg.get("recover", "none") == "none":  # Keys of steals that recover nothing unchanged.
    single += ("recover",)
  if cfg.get("answer_scaling", "none") == "none":  # Likewise for unscaled answers.
    single += ("answer_scaling",)
  return stages.settings_of(cfg, exclude=("attack",) + tuple(attacks.REGISTRY) + single)


# The attacker draws its own initial weights: with the target's recipe and the same seed,
# its pre-trained baseline would otherwise start from the victim's very weights (and stay
# correlated with it, coordinate by coordinate, without having seen a single answer).
ATTACKER_INIT_OFFSET = 1_000_003


def attacker_init_seed(seed: int) -> int:
  """The seed of the attacker's own pre-trained encoder's initial weights."""
  return int(seed) + ATTACKER_INIT_OFFSET


def steal_settings(config) -> dict:
  """What determines a stolen encoder (the stage key): the attack's settings and seed, and
  for the pre-training-encoder baseline the target's pretraining recipe it reuses. A
  StolenEncoder key is what it was before attacks were registered (existing workdirs'
  stages are still found); another attack's holds its name and hyperparameters instead of
  StolenEncoder's own settings."""
  cfg = config.steal
  attack = attack_of(cfg)
  if attack.name == attacks.DEFAULT:
    settings = {**stolenencoder_settings(cfg), "seed": config.seed}
    if cfg.variant == "pretrain_encoder":
      settings["pretrain"] = stages.settings_of(config.pretrain, exclude=(
          "dataset", "split", "num_examples", "knn"))
      settings["init_seed"] = attacker_init_seed(config.seed)
    return settings
  settings = {k: v for k, v in stolenencoder_settings(cfg).items() if k not in STOLENENCODER_KEYS}
  return {**settings, "attack": {"name": attack.name, **attacks.settings(cfg, attack)},
          "seed": config.seed}
