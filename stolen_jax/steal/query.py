"""A steal's stages opened and its answers bought: the query stage (Algorithm 1, line 4, or
an attack's query plan of augmented views), every answer paid through the metered service
(in process) or the HTTP client, cached durably so a rerun never pays twice."""

import dataclasses
import os
import time
from typing import Optional

import jax
import numpy as np
from absl import logging

from stolen_jax import attacks, eaas, parallel, pretrain, stages, targets
from stolen_jax import augment as augment_lib
from stolen_jax import defenses
from stolen_jax.data import sources
from stolen_jax.steal.settings import (attack_of, load_surrogate, query_views, steal_settings,
                                           validate_for_run)

from stolen_jax.targets import Target


def is_remote(target) -> bool:
  """Whether ``steal.target`` is an API (ours over HTTP, or another through an adapter)."""
  return targets.is_remote(target)


def open_remote(cfg):
  """(Target, defense, service) of a remote target (``targets.remote``)."""
  from stolen_jax.targets import remote
  return remote.open_remote(cfg)


def open_target(spec: str, mesh, batch_size: int = 512,
                max_weights_gb: Optional[float] = None) -> Target:
  """The target ``spec`` names: a checkpoint, published weights, a callable (``targets``)."""
  return targets.open(spec, mesh, batch_size, max_weights_gb=max_weights_gb)


@dataclasses.dataclass
class Opened:
  """A steal's stages opened (nothing queried or trained yet)."""
  cfg: object
  target: Target
  defense: defenses.Defense
  http: object
  surrogate: sources.ImageSet
  cache_key: dict
  query_stage: stages.Stage
  stage: stages.Stage
  done: Optional[dict]


def _plan_key(cfg) -> dict:
  """What the query stage's answers depend on beyond the images: for a plan of V augmented
  views, V and the augmentation (empty for one answer per image: keys unchanged)."""
  views = query_views(cfg)
  sybils = {"sybils": int(cfg.sybils), "sybil_mapping": int(cfg.sybil_mapping)} if int(
      cfg.get("sybils", 1)) > 1 else {}
  if not views:
    return sybils
  return {**sybils, "views": views, "augment": list(augment_lib.parse_names(cfg.augment)),
          "aug": stages.settings_of(cfg.aug)}


def open_steal(config, workdir: str, mesh, target: Optional[Target], defense) -> Opened:
  """Opens the query and steal stages of ``config`` (their keys decide what is reused)."""
  cfg = config.steal
  validate_for_run(cfg)
  strict = config.get("strict_stages", False)
  http = None
  if is_remote(cfg.target):
    target, defense, http = open_remote(cfg)
  target = target or open_target(cfg.target, mesh, cfg.query_batch_size,
                                cfg.get("max_weights_gb"))
  defense = defense or defenses.build(config, workdir, target, mesh)
  surrogate = load_surrogate(cfg, target.meta, config.seed)
  check_plan(cfg, len(surrogate))
  images_fp = eaas.cache.fingerprint(surrogate.images)
  cache_key = {"images": images_fp, "target": target.meta["fingerprint"],
               "defense": stages.key_of(defense.settings)}
  query_stage = stages.open_stage(
      workdir, "query", {"surrogate": f"{cfg.surrogate}:{cfg.surrogate_split}",
                         "size": len(surrogate), "image_size": cfg.image_size, "seed": config.seed,
                         **_plan_key(cfg)},
      upstream={"images": images_fp, "target": target.meta["fingerprint"],
                "defense": defense.settings}, strict=strict)
  upstream = ({"surrogate": images_fp} if cfg.variant == "pretrain_encoder"
              else {"query": query_stage.key})
  stage = stages.open_stage(workdir, "steal", steal_settings(config), upstream=upstream,
                            strict=strict)
  return Opened(cfg, target, defense, http, surrogate, cache_key, query_stage, stage,
                stage.completed())


@dataclasses.dataclass
class Queried:
  """The query stage's outcome: the training targets (f_t(x) per surrogate image, or what
  the attack makes of its views' answers) and what they cost."""
  target_features: np.ndarray
  service: object
  aug_service: object
  caches: list
  paid_before: int
  query_s: float
  sybils: Optional[dict] = None  # The sybil accounts' bills and mapping (steal.sybils > 1).

  @property
  def damaged_rows(self) -> int:
    """Cached answers found damaged and paid again."""
    return int(sum(len(c.damaged_rows) for c in self.caches))


def _augment_all(cfg):
  """The steal's augmentation A over a whole image set, jitted once."""
  return jax.jit(augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg)))


def _sent_pixels(augment_all, images: np.ndarray, key) -> np.ndarray:
  """A(images) drawn with ``key``, as the uint8 pixels sent to the API."""
  views = np.asarray(augment_all(images, key))
  return np.clip(np.round(views * 255), 0, 255).astype(np.uint8)


def plan_views(cfg, images: np.ndarray, seed: int, num_views: int) -> list[np.ndarray]:
  """The plan's ``num_views`` augmented views of every surrogate image (a pure function of
  the seed: a rerun, or another attack of the same seed, sends the same images)."""
  augment_all = _augment_all(cfg)
  base = jax.random.PRNGKey(seed + 17)
  return [_sent_pixels(augment_all, images, jax.random.fold_in(base, v)) for v in range(num_views)]


def _requests(op: Opened, seed: int):
  """[(name, images, cache key)] the query plan buys: the surrogate images, or V views."""
  views = query_views(op.cfg)
  if not views:
    return [("surrogate", op.surrogate.images, op.cache_key)]
  return [(f"view{v:03d}", pixels, {**op.cache_key, "images": eaas.cache.fingerprint(pixels)})
          for v, pixels in enumerate(plan_views(op.cfg, op.surrogate.images, seed, views))]


def query(op: Opened, stage_dir: str, seed: int) -> Queried:
  """Algorithm 1, line 4 (or the attack's plan): every answer the attack needs, each paid
  once and cached durably (and for query-aug the per-epoch service whose answers are logged
  in ``stage_dir``). The budget is checked for the whole plan before the first query."""
  cfg = op.cfg
  requests = _requests(op, seed)
  if int(cfg.get("sybils", 1)) > 1:
    from stolen_jax.steal import sybil
    with op.query_stage.claimed():
      features, accounts, caches, paid, seconds, bills = sybil.query(op, requests, seed)
    return Queried(features, accounts, None, caches, paid, seconds, bills)
  # Under the query stage's lease: two processes that share the stage pay its answers once
  # (the second opens the caches after the first is done, and finds them answered).
  with op.query_stage.claimed():
    if op.http is not None:  # The API meters, defends and keeps the ledger; the client pays and caches.
      op.http.attach_log(os.path.join(op.query_stage.dir, "api_queries.jsonl"))
      service = op.http
    else:
      service = eaas.QueryService(op.target.features_fn, budget=cfg.query_budget,
                                  defense=op.defense,
                                  log_path=os.path.join(op.query_stage.dir, "queries.jsonl"))
    caches = [eaas.FeatureCache(op.query_stage.dir, name, len(op.surrogate), key,
                                keyed_directory=True) for name, _, key in requests]
    return _pay(op, requests, caches, service, stage_dir)


def _pay(op: Opened, requests, caches, service, stage_dir) -> Queried:
  """The query plan's answers bought (under the query stage's lease): budget checked for
  the whole plan, then each request's missing answers paid and cached."""
  cfg = op.cfg
  aug_service = None
  if cfg.variant == "query_aug" and cfg.lambda_ > 0:
    aug_service = eaas.QueryService(op.target.features_fn, defense=op.defense,
                                    log_path=os.path.join(stage_dir, "aug_queries.jsonl"))
  check_budget(cfg, len(op.surrogate), caches, service, aug_service)
  if aug_service is not None and cfg.query_budget is not None:
    aug_service.budget = aug_service.queries_used + cfg.query_budget - service.queries_used - int(
        (~caches[0].answered).sum())
  paid_before = service.queries_used + (aug_service.queries_used if aug_service else 0)
  t_query = time.perf_counter()
  answers = []
  for (name, pixels, key), cache in zip(requests, caches):
    if op.http is not None:  # Idempotency keys scoped to the images sent.
      op.http.key_prefix = f"{key['images']}-"
    answers.append(eaas.query_with_cache(service, pixels, cache, cfg.query_batch_size,
                                         feature_dim=op.defense.answer_dim(
                                             op.target.meta.get("feature_dim"))))
  attack = attack_of(cfg)
  # One answer per image: (N, d); a plan of V views: (N, V, d).
  target_features = np.stack(answers, axis=1) if query_views(cfg) else answers[0]
  if attack.targets is not None:
    target_features = np.asarray(attack.targets(target_features, attacks.block_of(cfg, attack)))
  logging.info("steal: %d answers for %d surrogate images (%s); %d queries paid for this stage",
               len(requests) * len(op.surrogate), len(op.surrogate),
               "one each" if len(requests) == 1 else f"{len(requests)} views each",
               service.queries_used)
  return Queried(target_features, service, aug_service, caches, paid_before,
                 time.perf_counter() - t_query)


def check_plan(cfg, n: int) -> None:
  """Refuses, by arithmetic alone (before any view is drawn or anything is queried), a query
  plan larger than the whole budget: V views of n images need V·n queries."""
  views = max(query_views(cfg), 1)
  if cfg.query_budget is not None and views * n > cfg.query_budget:
    attack = attack_of(cfg).name
    plan = f"{n} images × {views} views = {views * n}" if views > 1 else f"{n}"
    raise eaas.QueryBudgetExceeded(
        f"the {attack} query plan needs {plan} queries, more than steal.query_budget="
        f"{cfg.query_budget}; nothing was queried (lower steal.surrogate_size"
        + (f" or steal.{attack}.views" if views > 1 else "") + ", or raise the budget)")


def check_budget(cfg, n: int, caches, service, aug_service) -> None:
  """Refuses, before the first query, a steal whose budget cannot cover what it still needs
  (``steal.query_budget``, or what the API's account has left when it meters the budget)."""
  needed = int(sum((~c.answered).sum() for c in caches))
  if cfg.query_budget is None:
    remaining = getattr(service, "remaining", None) if needed else None
    if remaining is not None and needed > remaining:
      raise eaas.QueryBudgetExceeded(
          f"this steal needs {needed} more queries ({len(caches)}·|D| = {n * len(caches)} in "
          f"all, {n * len(caches) - needed} cached) but the API's account has {remaining} "
          "left; nothing was queried" + eaas.answers.quarantine_note(caches))
    return
  if aug_service is not None:
    needed += max(0, cfg.epochs * n - aug_service.queries_used)
  spent = service.queries_used + (aug_service.queries_used if aug_service else 0)
  if spent + needed > cfg.query_budget:
    plan = f"{len(caches)}·|D|" if len(caches) > 1 else "|D|"
    total = n * len(caches)
    if aug_service:
      plan, total = "(e+1)·|D|", n * (1 + cfg.epochs)
    raise eaas.QueryBudgetExceeded(
        f"this steal needs {needed} more queries ({plan} = {total} in all, {spent} already "
        f"paid) but steal.query_budget={cfg.query_budget}; nothing was queried"
        + eaas.answers.quarantine_note(caches))


def query_aug_data(cfg, images, service, stage_dir, seed, mesh):
  """Per-epoch data for query-aug: A(x) for every surrogate image and its paid answer
  f_t(A(x)), cached per epoch so a rerun does not pay twice."""
  augment_all = _augment_all(cfg)

  def for_epoch(epoch, data):
    views_u8 = _sent_pixels(augment_all, images, jax.random.fold_in(jax.random.PRNGKey(seed + 7), epoch))
    cache = eaas.FeatureCache(os.path.join(stage_dir, "query_aug"), f"epoch{epoch:04d}",
                              len(images), {"images": eaas.cache.fingerprint(views_u8),
                                            "defense": stages.key_of(service.defense.settings)},
                              keyed_directory=True)
    answers = eaas.query_with_cache(service, views_u8, cache, cfg.query_batch_size)
    return {**data, "images_aug": parallel.put_replicated(views_u8.astype(np.float32) / 255.0, mesh),
            "target_aug": parallel.put_replicated(answers, mesh)}
  return for_epoch
