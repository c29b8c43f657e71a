"""StolenEncoder (Algorithm 1): query the target once per surrogate image, then train a
stolen encoder from random init to minimise L = L1 + λ·L2 (Eq. 3, 6, 7).

* L1 = d(f_t(x), f_s(x)) with f_t(x) from the query stage (|D| queries, cached);
* L2 = d(f_t(x), f_s(A(x))) with a fresh A(x) every epoch and no extra query (Eq. 6);
* variants (§V-A4): λ=0 is *w/o-aug*; ``variant='query_aug'`` uses L2' = d(f_t(A(x)),
  f_s(A(x))) and pays for f_t(A(x)) every epoch ((e+1)·|D| queries, Eq. 4);
  ``variant='pretrain_encoder'`` pre-trains an encoder on the surrogate set with the
  target's SimCLR settings (0 queries).

The official release differs from the paper's text (reference notes): it L2-normalises both
feature vectors before d, sums d over the batch, and runs the clean and the augmented batch
as separate BatchNorm passes. All three are options here (``normalize_features``,
``reduction``, ``bn_passes``); the summary records the choices.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stolen_jax import augment as augment_lib
from stolen_jax import (checkpoint, defend, eaas, features, losses, metrics, models, optim,
                        parallel, pretrain, stages, train_lib)
from stolen_jax import targets
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError, choose
from stolen_jax.targets import Target

VARIANTS = ("stolenencoder", "query_aug", "pretrain_encoder")


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


# BatchNorm's running-average momentum (models.resnet.batch_norm: PyTorch's 0.1).
_BN_MOMENTUM = 0.9


def steal_step(state: train_lib.TrainState, batch, *, model, tx, augment, lambda_: float,
               distance, reduction: str, normalize: bool, bn_passes: str,
               one_pass: bool = True, distance_choices: tuple = ()):
  """One update of the stolen encoder on L1 + λ·L2 (L2' when ``batch`` has ``target_aug``).

  ``batch``: ``images`` (uint8 x) and ``target`` = f_t(x); for query-aug also
  ``images_aug`` (the queried A(x), float) and ``target_aug`` = f_t(A(x)).

  ``bn_passes='separate'`` (the official code: each view normalised by its own batch
  statistics) runs as *one* pass over both views with BatchNorm statistics per view group
  (``vmap`` over the two groups, which XLA merges into one batched convolution per layer);
  the running averages are composed as the two sequential passes would leave them, so the
  result equals two passes (``one_pass=False``, kept as the reference) with half the kernels.

  ``distance`` is a name of ``losses.DISTANCES``, or (in a stack of cells that differ in it)
  a traced index into ``distance_choices``.
  """
  if distance_choices:
    branches = [functools.partial(losses.distance, name, reduction=reduction)
                for name in distance_choices]
    dist = lambda a, b: jax.lax.switch(distance, branches, a, b)  # noqa: E731
  else:
    dist = functools.partial(losses.distance, distance, reduction=reduction)
  query_aug = "target_aug" in batch
  clean = augment_lib.to_float(batch["images"])
  if isinstance(lambda_, (int, float)) and lambda_ == 0:
    views = None  # w/o-aug: no augmented pass at all (λ traced, as in a stack: always a pass).
  elif query_aug:
    views = batch["images_aug"]
  else:
    views = augment(batch["images"], train_lib.step_key(state))
  prep = losses.l2_normalize if normalize else (lambda f: f)
  target = prep(batch["target"])
  target_aug = prep(batch["target_aug"]) if query_aug else target

  def forward(params, batch_stats, x):
    f, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                             mutable=["batch_stats"])
    return prep(f), updates["batch_stats"]

  def forward_grouped(params, batch_stats, x, v):
    f, stats = jax.vmap(lambda xi: forward(params, batch_stats, xi))(jnp.stack([x, v]))
    # Sequential passes leave m·(m·s + (1-m)·c) + (1-m)·a; the vmapped ones give
    # u_c = m·s + (1-m)·c and u_a = m·s + (1-m)·a, so that is m·u_c + u_a - m·s.
    composed = jax.tree_util.tree_map(
        lambda s0, u: _BN_MOMENTUM * u[0] + u[1] - _BN_MOMENTUM * s0, batch_stats, stats)
    return f[0], f[1], composed

  def loss_fn(params):
    if views is None:
      f_clean, stats = forward(params, state.batch_stats, clean)
      l1 = dist(target, f_clean)
      return l1, (stats, l1, jnp.zeros(()))
    if bn_passes == "separate" and one_pass:
      f_clean, f_aug, stats = forward_grouped(params, state.batch_stats, clean, views)
    elif bn_passes == "separate":  # Two passes, one per view (the reference).
      f_clean, stats = forward(params, state.batch_stats, clean)
      f_aug, stats = forward(params, stats, views)
    else:  # One pass over [x; A(x)]: BatchNorm statistics over both.
      f_both, stats = forward(params, state.batch_stats, jnp.concatenate([clean, views]))
      f_clean, f_aug = jnp.split(f_both, 2)
    l1 = dist(target, f_clean)
    l2 = dist(target_aug, f_aug)
    return l1 + lambda_ * l2, (stats, l1, l2)

  (loss, (stats, l1, l2)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, stats), {"loss": loss, "l1": l1, "l2": l2}


def default_one_pass() -> bool:
  """Whether ``bn_passes='separate'`` runs as one grouped pass: on GPU/TPU, where it halves
  the kernel launches of a launch-bound small-batch step; not on CPU, where XLA:CPU ran the
  vmapped convolutions slower (bench/bn_passes.py, small ResNet: 0.48 vs 0.40 s min)."""
  return jax.default_backend() != "cpu"


def make_stacked_trainer(cfg, lambdas, total_steps: int, target_dim: int | None = None,
                         distances=None):
  """K steals in one program: cells of one architecture and surrogate set that differ in λ
  and/or the distance d (each its own parameters, optimizer state and augmentation keys)
  trained by one jitted step over a stacked state (``vmap``; the batch and its augmentation
  pipeline are shared, so K cells cost far less than K runs on an accelerator).

  Returns (model, tx, stacked_step, init_states) where ``init_states(rngs, sample, mesh)``
  builds the stacked state from one key per cell; ``stacked_step(states, batch)`` returns
  (states, metrics with a trailing K axis). Cell k equals a single run with ``lambdas[k]``,
  ``distances[k]`` (default: ``cfg.distance``) and the k-th key (tested). All λ must be > 0
  (w/o-aug has no augmented pass).
  """
  lambdas = [float(l) for l in lambdas]
  if any(not l > 0 for l in lambdas):
    raise ConfigError("a stack of steals needs every λ > 0 (λ=0 has no augmented pass)")
  distances = list(distances or [cfg.distance] * len(lambdas))
  if len(distances) != len(lambdas):
    raise ConfigError(f"{len(lambdas)} λ values but {len(distances)} distances")
  for d in distances:
    choose("steal.distance", d, losses.DISTANCES)
  model, tx, step_fn = make_trainer(cfg, total_steps, target_dim)
  lambda_arr = jnp.asarray(lambdas, jnp.float32)
  choices = tuple(sorted(set(distances))) if len(set(distances)) > 1 else ()
  if choices:
    step_fn = functools.partial(step_fn, distance_choices=choices)
  else:
    step_fn = functools.partial(step_fn, distance=distances[0])
  dist_arr = jnp.asarray([choices.index(d) if choices else 0 for d in distances], jnp.int32)

  def stacked_step(states, batch):
    def one_cell(state, lambda_, distance_index):  # The batch is shared, not vmapped.
      if choices:
        return step_fn(state, batch, lambda_=lambda_, distance=distance_index)
      return step_fn(state, batch, lambda_=lambda_)
    return jax.vmap(one_cell)(states, lambda_arr, dist_arr)

  def init_states(rngs, sample, mesh):
    singles = [train_lib.create_state(model, tx, r, sample, mesh) for r in rngs]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *singles)

  return model, tx, stacked_step, init_states


def unstack_state(states, k: int):
  """Cell ``k`` of a stacked state, as a single run's state."""
  return jax.tree_util.tree_map(lambda x: x[k], states)


def build_stolen_model(cfg, target_dim: int | None = None) -> models.Holder:
  """The stolen encoder f_s of ``cfg.arch`` (held under ``encoder`` in its checkpoint),
  mapping linearly to ``target_dim`` when its own feature dimension differs."""
  return models.Holder(models.get(cfg.arch, width=cfg.width, dtype=cfg.dtype, out_dim=target_dim))


def make_trainer(cfg, total_steps: int, target_dim: int | None = None):
  """(model, optimizer, pure step function) of the steal ``cfg``."""
  model = build_stolen_model(cfg, target_dim)
  tx = optim.make_optimizer(cfg, total_steps)
  augment = augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))
  step_fn = functools.partial(steal_step, model=model, tx=tx, augment=augment,
                              lambda_=float(cfg.lambda_), distance=cfg.distance,
                              reduction=cfg.reduction, normalize=bool(cfg.normalize_features),
                              bn_passes=cfg.bn_passes, one_pass=default_one_pass())
  return model, tx, step_fn


def attack_settings(cfg) -> dict:
  """The settings that define the attack, as recorded in summaries and results tables."""
  return {"variant": cfg.variant, "stolen_arch": cfg.arch, "stolen_width": float(cfg.width),
          "lambda": float(cfg.lambda_), "distance": cfg.distance, "reduction": cfg.reduction,
          "normalize_features": bool(cfg.normalize_features), "bn_passes": cfg.bn_passes,
          "augment": ",".join(augment_lib.parse_names(cfg.augment)), "epochs": cfg.epochs,
          "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr}


def validate_settings(cfg) -> None:
  """Checks the attack's names and values (before any stage runs or any query is paid)."""
  choose("steal.variant", cfg.variant, VARIANTS)
  choose("steal.distance", cfg.distance, losses.DISTANCES)
  choose("steal.reduction", cfg.reduction, losses.REDUCTIONS)
  choose("steal.bn_passes", cfg.bn_passes, ("separate", "joint"))
  if not np.isfinite(cfg.lambda_) or cfg.lambda_ < 0:
    raise ConfigError(f"steal.lambda_={cfg.lambda_} must be a finite number >= 0")
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


def _validate(cfg):
  validate_settings(cfg)
  if not cfg.target:
    raise ConfigError("steal.target is required: the path of the target encoder's Orbax "
                      "checkpoint (e.g. <workdir>/pretrain)")


def steal_settings(config) -> dict:
  """What determines a stolen encoder (the stage key): the attack's settings and seed, and
  for the pre-training-encoder baseline the target's pretraining recipe it reuses."""
  cfg = config.steal
  settings = {**stages.settings_of(cfg), "seed": config.seed}
  if cfg.variant == "pretrain_encoder":
    settings["pretrain"] = stages.settings_of(config.pretrain, exclude=("dataset", "split",
                                                                       "num_examples", "knn"))
  return settings


def open_target(spec: str, mesh, batch_size: int = 512) -> Target:
  """The target ``spec`` names: a checkpoint, published weights, a callable (``targets``)."""
  return targets.open(spec, mesh, batch_size)


def train_encoder(cfg, images: np.ndarray, target_features: np.ndarray, stage_dir: str, mesh,
                  seed: int, data_for_epoch=None, **meta_extra):
  """Algorithm 1's training loop: a stolen encoder of ``cfg`` fitted to ``target_features``
  of ``images`` in ``stage_dir`` (checkpoints, metrics). Returns (FitResult, model)."""
  name = meta_extra.pop("name", "steal")
  model, tx, step_fn = make_trainer(cfg, (len(images) // cfg.batch_size) * cfg.epochs,
                                    target_dim=target_features.shape[1])
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(seed + 1), sample, mesh)
  data = {"images": parallel.put_replicated(images, mesh),
          "target": parallel.put_replicated(target_features, mesh)}
  meta = pretrain.encoder_meta(cfg, model.encoder, "steal", **attack_settings(cfg),
                               num_images=len(images), **meta_extra)
  writer = metrics.Writer(stage_dir)
  try:
    result = train_lib.fit(
        state, step_fn, data, num_examples=len(images), batch_size=cfg.batch_size,
        epochs=cfg.epochs, seed=seed, mesh=mesh,
        checkpoint_dir=os.path.join(stage_dir, "checkpoints"), meta=meta, writer=writer,
        steps_per_dispatch=cfg.steps_per_dispatch,
        checkpoint_every_epochs=cfg.checkpoint_every_epochs, log_every_steps=cfg.log_every_steps,
        images_per_example=1 if cfg.lambda_ == 0 else 2,
        data_for_epoch=data_for_epoch and (lambda epoch: data_for_epoch(epoch, data)),
        name=name)
  finally:
    writer.close()
  return result, model


def train_shadow(config, workdir: str, target: Target, mesh) -> dict:
  """The provider's shadow stolen encoder f'_s for feature poisoning (§VII-C): Algorithm 1
  on the provider's own pretraining data with the attacker's settings, trained once (its own
  keyed stage) and reused. Returns what ``defend.make`` needs."""
  cfg = config.steal
  shadow_cfg = config.defense.shadow
  pre = config.get("pretrain")
  dataset = shadow_cfg.dataset or (pre.dataset if pre is not None else target.meta.get("dataset"))
  if not dataset:
    raise ConfigError("defense 'poison': set defense.shadow.dataset (the provider's data)")
  split = shadow_cfg.split
  num = shadow_cfg.num_examples if shadow_cfg.num_examples is not None else (
      pre.num_examples if pre is not None and not shadow_cfg.dataset else None)
  attacker = cfg.copy_and_resolve_references()
  with attacker.unlocked():
    attacker.epochs = shadow_cfg.epochs or cfg.epochs
  stage = stages.open_stage(
      workdir, "shadow", {"attack": stages.settings_of(attacker), "dataset": dataset,
                          "split": split, "num_examples": num, "seed": config.seed},
      upstream={"target": target.meta["fingerprint"]}, strict=config.get("strict_stages", False))
  if stage.completed() is None:
    data = sources.load(dataset, split, image_size=cfg.image_size, num_examples=num,
                        seed=config.seed + 11, data_dir=shadow_cfg.get("data_dir") or cfg.data_dir)
    logging.info("shadow: training the provider's shadow stolen encoder on %d images of %s",
                 len(data), dataset)
    t0 = time.perf_counter()
    result, _ = train_encoder(attacker, data.images, target.features_fn(data.images), stage.dir,
                              mesh, config.seed + 5, name="shadow")
    stage.write_summary({"complete": True, "dataset": f"{dataset}:{split}",
                         "num_images": len(data), "epochs": attacker.epochs,
                         "train_s": round(time.perf_counter() - t0, 2),
                         "final_loss": result.history[-1]["loss"] if result.history else None})
  shadow_fn, _ = features.restore_features_fn(stage.dir, mesh)
  augment = augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))
  return {"features_fn": shadow_fn,
          "augment": jax.jit(augment.per_key), "distance": cfg.distance,
          "lambda_": float(cfg.lambda_), "normalize": bool(cfg.normalize_features),
          "stage_dir": stage.dir}


def build_defense(config, workdir: str, target: Target, mesh) -> defend.Defense:
  """The provider's defense of ``config.defense`` for this target (poison: with its shadow
  encoder, trained here if not yet)."""
  dcfg = config.get("defense")
  defend.validate(dcfg, target.meta.get("feature_dim"))
  shadow = None
  if dcfg is not None and dcfg.name == "poison":
    shadow = train_shadow(config, workdir, target, mesh)
  return defend.make(dcfg, target.meta.get("feature_dim"), shadow)


@dataclasses.dataclass
class _Opened:
  """A steal's stages opened (nothing queried or trained yet)."""
  cfg: object
  target: Target
  defense: defend.Defense
  http: object
  surrogate: sources.ImageSet
  cache_key: dict
  query_stage: stages.Stage
  stage: stages.Stage
  done: Optional[dict]


def _open(config, workdir: str, mesh, target: Optional[Target], defense) -> _Opened:
  """Opens the query and steal stages of ``config`` (their keys decide what is reused)."""
  cfg = config.steal
  _validate(cfg)
  strict = config.get("strict_stages", False)
  http = None
  if is_remote(cfg.target):
    target, defense, http = open_remote(cfg)
  target = target or open_target(cfg.target, mesh, cfg.query_batch_size)
  defense = defense or build_defense(config, workdir, target, mesh)
  surrogate = load_surrogate(cfg, target.meta, config.seed)
  images_fp = eaas.cache.fingerprint(surrogate.images)
  cache_key = {"images": images_fp, "target": target.meta["fingerprint"],
               "defense": stages.key_of(defense.settings)}
  query_stage = stages.open_stage(
      workdir, "query", {"surrogate": f"{cfg.surrogate}:{cfg.surrogate_split}",
                         "size": len(surrogate), "image_size": cfg.image_size, "seed": config.seed},
      upstream={"images": images_fp, "target": target.meta["fingerprint"],
                "defense": defense.settings}, strict=strict)
  upstream = ({"surrogate": images_fp} if cfg.variant == "pretrain_encoder"
              else {"query": query_stage.key})
  stage = stages.open_stage(workdir, "steal", steal_settings(config), upstream=upstream,
                            strict=strict)
  return _Opened(cfg, target, defense, http, surrogate, cache_key, query_stage, stage,
                 stage.completed())


@dataclasses.dataclass
class _Queried:
  """The query stage's outcome: f_t(x) for every surrogate image, and what it cost."""
  target_features: np.ndarray
  service: object
  aug_service: object
  cache: object
  paid_before: int
  query_s: float


def _query(op: _Opened, stage_dir: str) -> _Queried:
  """Algorithm 1, line 4: one query per surrogate image, answers cached durably (and for
  query-aug the per-epoch service whose answers are logged in ``stage_dir``)."""
  cfg = op.cfg
  if op.http is not None:  # The API meters, defends and keeps the ledger; the client pays and caches.
    op.http.key_prefix = f"{op.cache_key['images']}-"
    op.http.attach_log(os.path.join(op.query_stage.dir, "api_queries.jsonl"))
    service = op.http
  else:
    service = eaas.QueryService(op.target.features_fn, budget=cfg.query_budget, defense=op.defense,
                                log_path=os.path.join(op.query_stage.dir, "queries.jsonl"))
  cache = eaas.FeatureCache(op.query_stage.dir, "surrogate", len(op.surrogate), op.cache_key,
                           keyed_directory=True)
  aug_service = None
  if cfg.variant == "query_aug" and cfg.lambda_ > 0:
    aug_service = eaas.QueryService(op.target.features_fn, defense=op.defense,
                                    log_path=os.path.join(stage_dir, "aug_queries.jsonl"))
  _check_budget(cfg, len(op.surrogate), cache, service, aug_service)
  if aug_service is not None and cfg.query_budget is not None:
    aug_service.budget = aug_service.queries_used + cfg.query_budget - service.queries_used - int(
        (~cache.answered).sum())
  paid_before = service.queries_used + (aug_service.queries_used if aug_service else 0)
  t_query = time.perf_counter()
  target_features = eaas.query_with_cache(service, op.surrogate.images, cache, cfg.query_batch_size)
  logging.info("steal: %d surrogate features (dim %d); %d queries paid for this query stage",
               len(op.surrogate), target_features.shape[1], service.queries_used)
  return _Queried(target_features, service, aug_service, cache, paid_before,
                  time.perf_counter() - t_query)


def run(config, workdir: str, mesh=None, target: Optional[Target] = None,
        defense: Optional[defend.Defense] = None) -> dict:
  """``job='steal'``: the query stage (``workdir/query/<key>``, keyed by the target's
  fingerprint, the surrogate images and the defense) then training (``workdir/steal/<key>``,
  keyed by the attack's settings and the query stage). A finished stage with the same key is
  restored; other settings get their own directory. Returns the steal summary."""
  mesh = mesh or parallel.make_mesh()
  t_start = time.perf_counter()
  op = _open(config, workdir, mesh, target, defense)
  if op.done is not None:
    logging.info("steal: restored the finished stage %s", op.stage.dir)
    return {**op.done, "restored": True}
  return _train_alone(config, op, mesh, t_start)


def _train_alone(config, op: _Opened, mesh, t_start: float) -> dict:
  """Queries, trains and summarises the opened, unfinished steal ``op`` on its own."""
  if op.cfg.variant == "pretrain_encoder":
    return _pretrain_baseline(config, op.surrogate, op.stage, config.seed, t_start)
  q = _query(op, op.stage.dir)
  data_for_epoch = None
  if q.aug_service is not None:
    data_for_epoch = _query_aug_data(op.cfg, op.surrogate.images, q.aug_service, op.stage.dir,
                                     config.seed, mesh)
  result, model = train_encoder(op.cfg, op.surrogate.images, q.target_features, op.stage.dir, mesh,
                                config.seed, data_for_epoch, surrogate=op.cfg.surrogate)
  return _finish(op, q, result, model, mesh, config.seed, t_start)


# Settings in which the cells of one stack may differ (the rest is shared: one program).
STACKABLE_AXES = ("lambda_", "distance")


def stack_group(config) -> Optional[str]:
  """The key of the stack ``config``'s steal may join (cells with the same key train as one
  program), or None when it cannot be stacked: w/o-aug (λ=0), query-aug, the pre-training
  baseline and HTTP targets train alone."""
  cfg = config.steal
  if cfg.variant != "stolenencoder" or not cfg.lambda_ > 0 or is_remote(cfg.target):
    return None
  settings = {k: v for k, v in steal_settings(config).items() if k not in STACKABLE_AXES}
  target = stages.plain(cfg.target) if cfg.target else pretrain.stage_settings(config)
  return stages.key_of({"steal": settings, "target": target,
                        "defense": stages.plain(config.get("defense"))})


def run_stack(configs, workdir: str, mesh=None, target: Optional[Target] = None,
              defense: Optional[defend.Defense] = None) -> list[dict]:
  """The steal stages of ``configs`` (one ``stack_group``: they differ only in λ and d)
  trained as one stacked program (``make_stacked_trainer``), then written as if each had
  been trained alone: its own ``steal/<key>`` with checkpoint and summary, so every later
  reader (probes, sweeps, reruns) sees an ordinary finished stage. Finished cells are
  restored, not retrained. The stack checkpoints in ``steal_stack/<key>`` and resumes.
  Returns the summaries in the order of ``configs``."""
  mesh = mesh or parallel.make_mesh()
  groups = {stack_group(c) for c in configs}
  if None in groups or len(groups) != 1:
    raise ConfigError("run_stack: the cells must share one stack group (same attack but λ>0 "
                      "and d; not query-aug, pretrain_encoder or an HTTP target)")
  t_start = time.perf_counter()
  opened = [_open(c, workdir, mesh, target, defense) for c in configs]
  out = [{**op.done, "restored": True} if op.done is not None else None for op in opened]
  pending = [i for i, op in enumerate(opened) if op.done is None]
  if len(pending) == 1:  # Nothing to stack with: trained as a single run would be.
    out[pending[0]] = _train_alone(configs[pending[0]], opened[pending[0]], mesh, t_start)
  if len(pending) <= 1:
    return out
  first = opened[pending[0]]
  cfg, seed = first.cfg, configs[pending[0]].seed
  q = _query(first, first.stage.dir)  # One query stage for all: they share its key.
  images = first.surrogate.images
  lambdas = [float(opened[i].cfg.lambda_) for i in pending]
  distances = [opened[i].cfg.distance for i in pending]
  stack = stages.open_stage(workdir, "steal_stack", {"cells": [opened[i].stage.key for i in pending]},
                            strict=False)
  steps = (len(images) // cfg.batch_size) * cfg.epochs
  model, tx, step_fn, init_states = make_stacked_trainer(
      cfg, lambdas, steps, target_dim=q.target_features.shape[1], distances=distances)
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  # Every cell starts where its single run would: the same key (the seed's).
  states = init_states([jax.random.PRNGKey(seed + 1)] * len(pending), sample, mesh)
  data = {"images": parallel.put_replicated(images, mesh),
          "target": parallel.put_replicated(q.target_features, mesh)}
  logging.info("steal: %d cells (λ=%s, d=%s) as one stacked program in %s", len(pending),
               lambdas, distances, stack.dir)
  writer = metrics.Writer(stack.dir)
  try:
    result = train_lib.fit(
        states, step_fn, data, num_examples=len(images), batch_size=cfg.batch_size,
        epochs=cfg.epochs, seed=seed, mesh=mesh,
        checkpoint_dir=os.path.join(stack.dir, "checkpoints"), meta={"stack": lambdas},
        writer=writer, steps_per_dispatch=cfg.steps_per_dispatch,
        checkpoint_every_epochs=cfg.checkpoint_every_epochs, log_every_steps=cfg.log_every_steps,
        images_per_example=2 * len(pending), name=f"steal x{len(pending)}")
  finally:
    writer.close()
  for k, i in enumerate(pending):
    op = opened[i]
    state = unstack_state(result.state, k)
    meta = pretrain.encoder_meta(op.cfg, model.encoder, "steal", **attack_settings(op.cfg),
                                 num_images=len(images), surrogate=op.cfg.surrogate,
                                 stacked_with=len(pending))
    mngr = checkpoint.manager(os.path.join(op.stage.dir, "checkpoints"))
    checkpoint.save(mngr, int(state.step), state, meta, wait=True)
    mngr.close()
    history = [{"epoch": h["epoch"], "steps_per_s": h["steps_per_s"],
                "images_per_s": h["images_per_s"] / len(pending),
                **{name[:-len("_per_cell")]: v[k] for name, v in h.items()
                   if name.endswith("_per_cell")}} for h in result.history]
    cell = dataclasses.replace(result, state=state, history=history,
                               images_per_s=result.images_per_s / len(pending))
    out[i] = _finish(op, q, cell, model, mesh, configs[i].seed, t_start,
                     stacked_with=len(pending), stack_dir=stack.dir)
  return out


def _finish(op: _Opened, q: _Queried, result, model, mesh, seed: int, t_start: float,
            **extra) -> dict:
  """The steal's summary (costs, timings, held-out fidelity, failure, and ``extra``),
  written atomically."""
  cfg, service, aug_service = op.cfg, q.service, q.aug_service
  paid = service.queries_used + (aug_service.queries_used if aug_service else 0)
  summary = {
      **attack_settings(cfg),
      "target": targets.absolute(cfg.target),
      "target_fingerprint": op.target.meta["fingerprint"], "defense": op.defense.settings,
      "surrogate": f"{cfg.surrogate}:{cfg.surrogate_split}", "surrogate_size": len(op.surrogate),
      "queries": paid, "queries_this_run": paid - q.paid_before,
      "queries_repaired": int(len(q.cache.damaged_rows)),
      "query_s": round(q.query_s, 2), "compile_s": round(result.compile_s, 2),
      "train_s": round(result.train_s, 2), "images_per_s": round(result.images_per_s, 1),
      "steps_per_s": round(result.steps_per_s, 3), "final_step": int(result.state.step),
      "resumed_from_step": result.resumed_from_step, "query_stage": op.query_stage.dir,
      "stage_dir": op.stage.dir, **extra,
  }
  if result.history:
    summary.update(final_l1=result.history[-1]["l1"], final_l2=result.history[-1]["l2"],
                   final_loss=result.history[-1]["loss"])
  if op.http is not None:
    account = op.http.account()
    summary.update(api=cfg.target, api_account=account["name"], api_used=account["used"],
                   api_cost=account["cost"], api_replayed=op.http.replayed)
  if cfg.eval_heldout and op.http is not None:
    summary["heldout"] = None  # The true target is the provider's: no free evaluation.
  elif cfg.eval_heldout:
    summary["heldout"] = heldout_fidelity(cfg, result.state, model, op.target, mesh, seed)
    failure = heldout_failure(summary["heldout"], defense=op.defense.name)
    if failure:
      summary["failed"] = failure
      logging.warning("steal FAILED: %s", failure)
  summary["wall_s"] = round(time.perf_counter() - t_start, 2)
  summary["complete"] = True
  return _write_summary(op.stage, summary, result.history)


def is_remote(target) -> bool:
  """Whether ``steal.target`` is an API (ours over HTTP, or another through an adapter)."""
  return targets.is_remote(target)


def open_remote(cfg):
  """(Target, defense, service) of a remote target (``targets.remote``)."""
  from stolen_jax.targets import remote
  return remote.open_remote(cfg)


def _check_budget(cfg, n: int, cache, service, aug_service) -> None:
  """Refuses, before the first query, a steal whose budget cannot cover what it still needs."""
  if cfg.query_budget is None:
    return
  needed = int((~cache.answered).sum())
  if aug_service is not None:
    needed += max(0, cfg.epochs * n - aug_service.queries_used)
  spent = service.queries_used + (aug_service.queries_used if aug_service else 0)
  if spent + needed > cfg.query_budget:
    raise eaas.QueryBudgetExceeded(
        f"this steal needs {needed} more queries ({'(e+1)·|D|' if aug_service else '|D|'} = "
        f"{n * (1 + (cfg.epochs if aug_service else 0))} in all, {spent} already paid) but "
        f"steal.query_budget={cfg.query_budget}; nothing was queried")


def heldout_failure(heldout: dict, margin: float = 0.01, defense: str = "none") -> Optional[str]:
  """Why a steal failed, if its held-out fidelity to the (true) target is no better than a
  random encoder's. Under a defense that is the defense working, and the message says so."""
  s, r = heldout.get("stolen_cosine"), heldout.get("random_cosine")
  if s is None or r is None:
    return None
  if not np.isfinite(s) or s <= r + margin:
    why = ("the defended answers did not let it approach the true target"
           if defense != "none" else "the steal did not learn (learning rate, data?)")
    return (f"held-out cosine to the target {s:.3f} is no better than a random encoder's "
            f"{r:.3f}: {why}")
  return None


def _query_aug_data(cfg, images, service, stage_dir, seed, mesh):
  """Per-epoch data for query-aug: A(x) for every surrogate image and its paid answer
  f_t(A(x)), cached per epoch so a rerun does not pay twice."""
  augment_all = jax.jit(augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg)))

  def for_epoch(epoch, data):
    views = np.asarray(augment_all(images, jax.random.fold_in(jax.random.PRNGKey(seed + 7), epoch)))
    views_u8 = np.clip(np.round(views * 255), 0, 255).astype(np.uint8)  # What is sent to the API.
    cache = eaas.FeatureCache(os.path.join(stage_dir, "query_aug"), f"epoch{epoch:04d}",
                              len(images), {"images": eaas.cache.fingerprint(views_u8),
                                            "defense": stages.key_of(service.defense.settings)},
                              keyed_directory=True)
    answers = eaas.query_with_cache(service, views_u8, cache, cfg.query_batch_size)
    return {**data, "images_aug": parallel.put_replicated(views_u8.astype(np.float32) / 255.0, mesh),
            "target_aug": parallel.put_replicated(answers, mesh)}
  return for_epoch


def heldout_fidelity(cfg, state, model, target: Target, mesh, seed) -> dict:
  """Evaluation only (not an attacker query): on held-out images, the distance between the
  target's and the stolen encoder's features, beside a random-init encoder's."""
  images = sources.load(cfg.surrogate, cfg.heldout_split, image_size=cfg.image_size,
                        num_examples=cfg.eval_heldout, seed=seed + 3, data_dir=cfg.data_dir).images
  f_t = target.features_fn(images)
  stolen_fn = features.make_feature_fn(model.encoder)
  f_s = features.extract(stolen_fn, pretrain.encoder_variables(state), images, mesh)
  random_vars = jax.jit(model.encoder.init)(jax.random.PRNGKey(seed + 99), jnp.asarray(images[:1], jnp.float32))
  f_r = features.extract(stolen_fn, random_vars, images, mesh)
  out = {"num_images": len(images)}
  for name, f in (("stolen", f_s), ("random", f_r)):
    # Cosine and ℓ2 on normalised features: comparable across encoders of any scale.
    out[f"{name}_cosine"] = float(-losses.distance("cosine", f_t, f))
    out[f"{name}_l2_normalized"] = float(losses.distance(
        "l2", losses.l2_normalize(jnp.asarray(f_t)), losses.l2_normalize(jnp.asarray(f))))
  return out


def _pretrain_baseline(config, surrogate, stage, seed, t_start) -> dict:
  """The pre-training-encoder baseline: SimCLR on the surrogate set, target's settings."""
  cfg = config.steal
  base = config.pretrain.copy_and_resolve_references()
  with base.unlocked():
    base.dataset = cfg.surrogate
    base.split = cfg.surrogate_split
    base.num_examples = len(surrogate)
    base.knn.enabled = False
  summary = pretrain.train(base, stage.dir, seed, stage="steal")
  summary.update(variant="pretrain_encoder", queries=0, queries_this_run=0,
                 surrogate=f"{cfg.surrogate}:{cfg.surrogate_split}", surrogate_size=len(surrogate),
                 stage_dir=stage.dir, wall_s=round(time.perf_counter() - t_start, 2))
  return _write_summary(stage, summary, summary.pop("history", []))


def _write_summary(stage, summary, history) -> dict:
  """Writes ``summary.json`` (summary + per-epoch history) atomically; returns what it wrote."""
  written = stage.write_summary({**summary, "history": history})
  logging.info("steal summary: %s", json.dumps({k: v for k, v in written.items() if k != "history"}))
  return written
