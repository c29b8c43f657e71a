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

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stolen_jax import augment as augment_lib
from stolen_jax import eaas, features, losses, metrics, models, optim, parallel, pretrain, train_lib
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError, choose

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


def steal_step(state: train_lib.TrainState, batch, *, model, tx, augment, lambda_: float,
               distance: str, reduction: str, normalize: bool, bn_passes: str):
  """One update of the stolen encoder on L1 + λ·L2 (L2' when ``batch`` has ``target_aug``).

  ``batch``: ``images`` (uint8 x) and ``target`` = f_t(x); for query-aug also
  ``images_aug`` (the queried A(x), float) and ``target_aug`` = f_t(A(x)).
  """
  query_aug = "target_aug" in batch
  clean = augment_lib.to_float(batch["images"])
  if lambda_ == 0:
    views = None  # w/o-aug: no augmented pass at all.
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

  def loss_fn(params):
    if views is None:
      f_clean, stats = forward(params, state.batch_stats, clean)
      l1 = losses.distance(distance, target, f_clean, reduction)
      return l1, (stats, l1, jnp.zeros(()))
    if bn_passes == "separate":  # As the official code: one BatchNorm pass per view.
      f_clean, stats = forward(params, state.batch_stats, clean)
      f_aug, stats = forward(params, stats, views)
    else:  # One pass over [x; A(x)]: BatchNorm statistics over both.
      f_both, stats = forward(params, state.batch_stats, jnp.concatenate([clean, views]))
      f_clean, f_aug = jnp.split(f_both, 2)
    l1 = losses.distance(distance, target, f_clean, reduction)
    l2 = losses.distance(distance, target_aug, f_aug, reduction)
    return l1 + lambda_ * l2, (stats, l1, l2)

  (loss, (stats, l1, l2)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, stats), {"loss": loss, "l1": l1, "l2": l2}


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
                              bn_passes=cfg.bn_passes)
  return model, tx, step_fn


def attack_settings(cfg) -> dict:
  """The settings that define the attack, as recorded in summaries and results tables."""
  return {"variant": cfg.variant, "stolen_arch": cfg.arch, "stolen_width": float(cfg.width),
          "lambda": float(cfg.lambda_), "distance": cfg.distance, "reduction": cfg.reduction,
          "normalize_features": bool(cfg.normalize_features), "bn_passes": cfg.bn_passes,
          "augment": ",".join(augment_lib.parse_names(cfg.augment)), "epochs": cfg.epochs,
          "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr}


def validate_settings(cfg) -> None:
  """Checks the attack's names and values (before any stage runs)."""
  choose("steal.variant", cfg.variant, VARIANTS)
  choose("steal.distance", cfg.distance, losses.DISTANCES)
  choose("steal.reduction", cfg.reduction, ("mean", "sum"))
  choose("steal.bn_passes", cfg.bn_passes, ("separate", "joint"))
  if cfg.lambda_ < 0:
    raise ConfigError(f"steal.lambda_={cfg.lambda_} must be >= 0")


def _validate(cfg):
  validate_settings(cfg)
  if not cfg.target:
    raise ConfigError("steal.target is required: the path of the target encoder's Orbax "
                      "checkpoint (e.g. <workdir>/pretrain/checkpoints)")


def make_service(cfg, mesh, workdir: str, defense=None):
  """The EaaS API over the target checkpoint, its query log kept in ``workdir``."""
  return eaas.from_checkpoint(cfg.target, mesh, budget=cfg.query_budget,
                              defense=defense or eaas.service.identity_defense,
                              log_path=os.path.join(workdir, "queries.jsonl"),
                              batch_size=cfg.query_batch_size)


def run(config, workdir: str, mesh=None, defense=None) -> dict:
  """``job='steal'``: query stage then training; writes checkpoints and ``summary.json``."""
  cfg = config.steal
  _validate(cfg)
  mesh = mesh or parallel.make_mesh()
  seed = config.seed
  t_start = time.perf_counter()
  service, target_meta = make_service(cfg, mesh, workdir, defense)
  surrogate = load_surrogate(cfg, target_meta, seed)
  if cfg.variant == "pretrain_encoder":
    return _pretrain_baseline(config, surrogate, workdir, seed, t_start)
  queries_before = service.queries_used

  # Query stage: one query per surrogate image, answers cached durably (Algorithm 1, line 4).
  t_query = time.perf_counter()
  cache = eaas.FeatureCache(os.path.join(workdir, "query"), "surrogate", len(surrogate),
                            eaas.cache.fingerprint(surrogate.images))
  target_features = eaas.query_with_cache(service, surrogate.images, cache, cfg.query_batch_size)
  query_s = time.perf_counter() - t_query
  logging.info("steal: %d surrogate features (dim %d); %d queries paid so far", len(surrogate),
               target_features.shape[1], service.queries_used)

  model, tx, step_fn = make_trainer(cfg, (len(surrogate) // cfg.batch_size) * cfg.epochs,
                                    target_dim=target_features.shape[1])
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(seed + 1), sample, mesh)
  data = {"images": parallel.put_replicated(surrogate.images, mesh),
          "target": parallel.put_replicated(target_features, mesh)}
  data_for_epoch = None
  if cfg.variant == "query_aug" and cfg.lambda_ > 0:
    data_for_epoch = _query_aug_data(cfg, data, surrogate.images, service, workdir, seed, mesh)
  meta = pretrain.encoder_meta(cfg, model.encoder, "steal", **attack_settings(cfg),
                               surrogate=cfg.surrogate, num_images=len(surrogate))
  writer = metrics.Writer(workdir)
  views = 1 if cfg.lambda_ == 0 else 2
  result = train_lib.fit(
      state, step_fn, data, num_examples=len(surrogate), batch_size=cfg.batch_size,
      epochs=cfg.epochs, seed=seed, mesh=mesh, checkpoint_dir=os.path.join(workdir, "checkpoints"),
      meta=meta, writer=writer, steps_per_dispatch=cfg.steps_per_dispatch,
      checkpoint_every_epochs=cfg.checkpoint_every_epochs, log_every_steps=cfg.log_every_steps,
      images_per_example=views, data_for_epoch=data_for_epoch, name="steal")
  writer.close()
  summary = {
      **attack_settings(cfg), "target": os.path.abspath(cfg.target),
      "surrogate": f"{cfg.surrogate}:{cfg.surrogate_split}", "surrogate_size": len(surrogate),
      "queries": service.queries_used, "queries_this_run": service.queries_used - queries_before,
      "query_s": round(query_s, 2), "compile_s": round(result.compile_s, 2),
      "train_s": round(result.train_s, 2), "images_per_s": round(result.images_per_s, 1),
      "steps_per_s": round(result.steps_per_s, 3), "final_step": int(result.state.step),
      "resumed_from_step": result.resumed_from_step,
  }
  if result.history:
    summary.update(final_l1=result.history[-1]["l1"], final_l2=result.history[-1]["l2"],
                   final_loss=result.history[-1]["loss"])
  if cfg.eval_heldout:
    summary["heldout"] = heldout_fidelity(cfg, result.state, model, mesh, seed)
  summary["wall_s"] = round(time.perf_counter() - t_start, 2)
  summary["complete"] = True
  return _write_summary(workdir, summary, result.history)


def _query_aug_data(cfg, data, images, service, workdir, seed, mesh):
  """Per-epoch data for query-aug: A(x) for every surrogate image and its paid answer
  f_t(A(x)), cached per epoch so a rerun does not pay twice."""
  augment_all = jax.jit(augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg)))

  def for_epoch(epoch):
    views = np.asarray(augment_all(images, jax.random.fold_in(jax.random.PRNGKey(seed + 7), epoch)))
    views_u8 = np.clip(np.round(views * 255), 0, 255).astype(np.uint8)  # What is sent to the API.
    cache = eaas.FeatureCache(os.path.join(workdir, "query"), f"aug_epoch{epoch:04d}", len(images),
                              eaas.cache.fingerprint(views_u8))
    answers = eaas.query_with_cache(service, views_u8, cache, cfg.query_batch_size)
    return {**data, "images_aug": parallel.put_replicated(views_u8.astype(np.float32) / 255.0, mesh),
            "target_aug": parallel.put_replicated(answers, mesh)}
  return for_epoch


def heldout_fidelity(cfg, state, model, mesh, seed) -> dict:
  """Evaluation only (not an attacker query): on held-out images, the distance between the
  target's and the stolen encoder's features, beside a random-init encoder's."""
  from stolen_jax import checkpoint
  images = sources.load(cfg.surrogate, cfg.heldout_split, image_size=cfg.image_size,
                        num_examples=cfg.eval_heldout, seed=seed + 3, data_dir=cfg.data_dir).images
  target_enc, target_vars, _ = checkpoint.restore_encoder(cfg.target)
  f_t = features.extract(features.make_feature_fn(target_enc), target_vars, images, mesh)
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


def _pretrain_baseline(config, surrogate, workdir, seed, t_start) -> dict:
  """The pre-training-encoder baseline: SimCLR on the surrogate set, target's settings."""
  cfg = config.steal
  base = config.pretrain.copy_and_resolve_references()
  with base.unlocked():
    base.dataset = cfg.surrogate
    base.split = cfg.surrogate_split
    base.num_examples = len(surrogate)
    base.knn.enabled = False
  summary = pretrain.train(base, workdir, seed, stage="steal")
  summary.update(variant="pretrain_encoder", queries=0, queries_this_run=0,
                 surrogate=f"{cfg.surrogate}:{cfg.surrogate_split}", surrogate_size=len(surrogate),
                 wall_s=round(time.perf_counter() - t_start, 2))
  return _write_summary(workdir, summary, summary.pop("history", []))


def _write_summary(workdir, summary, history) -> dict:
  """Writes ``summary.json`` (summary + per-epoch history) and returns what it wrote."""
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump({**summary, "history": history}, f, indent=2)
  logging.info("steal summary: %s", json.dumps(summary))
  return {**summary, "history": history}
