"""``job='steal'``: open the stages, buy the answers, train the stolen encoder with the
chosen attack, and write the summary (costs, timings, FLOPs, held-out fidelity)."""

import json
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from stolen_jax import defenses, features, losses, parallel, pretrain, targets
from stolen_jax.data import sources
from stolen_jax.steal import query as query_lib
from stolen_jax.steal.settings import attack_settings
from stolen_jax.steal.trainer import answer_scale, train_encoder
from stolen_jax.targets import Target


def run(config, workdir: str, mesh=None, target: Optional[Target] = None,
        defense: Optional[defenses.Defense] = None) -> dict:
  """``job='steal'``: the query stage (``workdir/query/<key>``, keyed by the target's
  fingerprint, the surrogate images and the defense) then training (``workdir/steal/<key>``,
  keyed by the attack's settings and the query stage). A finished stage with the same key is
  restored; other settings get their own directory. Returns the steal summary."""
  mesh = mesh or parallel.make_mesh()
  t_start = time.perf_counter()
  op = query_lib.open_steal(config, workdir, mesh, target, defense)
  if op.done is not None:
    logging.info("steal: restored the finished stage %s", op.stage.dir)
    return {**op.done, "restored": True}
  with op.stage.claimed() as mine:  # Another process on this workdir may be training it.
    if not mine:
      return {**op.stage.completed(), "restored": True}
    return train_alone(config, op, mesh, t_start)


def train_alone(config, op: query_lib.Opened, mesh, t_start: float) -> dict:
  """Queries, trains and summarises the opened, unfinished steal ``op`` on its own."""
  if op.cfg.variant == "pretrain_encoder":
    return pretrain_baseline(config, op.surrogate, op.stage, config.seed, t_start)
  q = query_lib.query(op, op.stage.dir, config.seed)
  recovered = None
  if op.cfg.get("recover", "none") == "auto":  # Recognise the perturbation, undo it.
    from stolen_jax.steal import recover
    recovered = recover.detect(q.target_features, _shadow_features(config, op, mesh))
    q.target_features = recover.recover(q.target_features, recovered)
    logging.info("steal: the answers show %s", recovered)
  data_for_epoch = None
  if q.aug_service is not None:
    data_for_epoch = query_lib.query_aug_data(op.cfg, op.surrogate.images, q.aug_service, op.stage.dir,
                                     config.seed, mesh)
  result, model = train_encoder(op.cfg, op.surrogate.images, q.target_features, op.stage.dir, mesh,
                                config.seed, data_for_epoch, surrogate=op.cfg.surrogate)
  return finish(op, q, result, model, mesh, config.seed, t_start,
                **({"recover": recovered} if recovered is not None else {}))


def _shadow_features(config, op: query_lib.Opened, mesh):
  """The attacker's own clean encoder (``steal.variant=pretrain_encoder`` on its surrogate
  set: no query; its own keyed stage) and its features of the surrogate images — what
  clean answers look like, to recognise noise."""
  import copy
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.steal.variant, cfg.steal.recover = "pretrain_encoder", "none"
    cfg.steal.attack = "stolenencoder"  # Its pre-trained encoder, whatever the attack.
  shadow = run(cfg, op.stage.workdir, mesh=mesh, target=op.target, defense=op.defense)
  fn, _ = features.restore_features_fn(shadow["stage_dir"], mesh)
  return np.asarray(fn(op.surrogate.images))


def finish(op: query_lib.Opened, q: query_lib.Queried, result, model, mesh, seed: int, t_start: float,
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
      "queries_repaired": q.damaged_rows,
      "query_s": round(q.query_s, 2), "compile_s": round(result.compile_s, 2),
      "train_s": round(result.train_s, 2), "images_per_s": round(result.images_per_s, 1),
      "steps_per_s": round(result.steps_per_s, 3), "final_step": int(result.state.step),
      "resumed_from_step": result.resumed_from_step, "query_stage": op.query_stage.dir,
      "stage_dir": op.stage.dir, **extra,
  }
  if q.sybils is not None:  # Each account's bill; "queries" is their sum.
    summary["sybils"] = q.sybils
  if result.history:  # The last epoch's loss and its parts (l1, l2; an attack's own terms).
    summary.update({f"final_{k}": v for k, v in result.history[-1].items()
                    if k not in ("epoch", "steps_per_s", "images_per_s")
                    and not k.endswith("_per_cell")})
  if result.flops_per_step:  # XLA's count for the compiled step, times the steps trained.
    summary["train_gflops"] = float(f"{result.flops_per_step * int(result.state.step) / 1e9:.4g}")
  if op.http is not None:
    account = op.http.account()
    summary.update(api=cfg.target, api_account=account["name"], api_used=account["used"],
                   api_cost=account["cost"], api_replayed=op.http.replayed,
                   api_maybe_billed=int(account.get("maybe_billed", 0)))
    if q.sybils is not None:  # The API's bills of every sybil key, summed.
      bills = q.sybils["accounts"]
      summary.update(api_account=",".join(b["api_account"] for b in bills),
                     api_used=sum(b["api_used"] for b in bills),
                     api_cost=round(sum(b["api_cost"] for b in bills), 6))
  if cfg.eval_heldout and op.http is not None:
    summary["heldout"] = None  # The true target is the provider's: no free evaluation.
  elif cfg.eval_heldout:
    summary["heldout"] = heldout_fidelity(cfg, result.state, model, op.target, mesh, seed,
                                          own_space=op.defense.out_dim is not None,
                                          scale=answer_scale(cfg, q.target_features))
    failure = heldout_failure(summary["heldout"], defense=op.defense.name)
    if failure:
      summary["failed"] = failure
      logging.warning("steal FAILED: %s", failure)
  summary["wall_s"] = round(time.perf_counter() - t_start, 2)
  summary["complete"] = True
  return write_summary(op.stage, summary, result.history)


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


def heldout_fidelity(cfg, state, model, target: Target, mesh, seed, own_space=False,
                     scale=None) -> dict:
  """Evaluation only (not an attacker query): on held-out images, the distance between the
  target's and the stolen encoder's features, beside a random-init encoder's. ``own_space``:
  the answers were in the account's own space (B4B's secret map; the same dimension once a
  recovering attacker dropped the padding), compared through a fitted affine map. ``scale``
  (``answer_scale`` of the paid answers, for ``steal.answer_scaling=standardize``): compared
  as the loss compares them, as z-scores — a cosine of z-scores leaves each feature's
  distance from the answers' mean free, so a cosine in the target's own space means nothing."""
  images = sources.load(cfg.surrogate, cfg.heldout_split, image_size=cfg.image_size,
                        num_examples=cfg.eval_heldout, seed=seed + 3, data_dir=cfg.data_dir).images
  f_t = target.features_fn(images)
  stolen_fn = features.make_feature_fn(model.encoder)
  f_s = features.extract(stolen_fn, pretrain.encoder_variables(state), images, mesh)
  random_vars = jax.jit(model.encoder.init)(jax.random.PRNGKey(seed + 99), jnp.asarray(images[:1], jnp.float32))
  f_r = features.extract(stolen_fn, random_vars, images, mesh)
  out = {"num_images": len(images)}
  f_t = np.asarray(f_t, np.float32)
  if scale is not None and not own_space and f_s.shape[1] == f_t.shape[1]:
    mean, inv_std = (np.asarray(a) for a in scale)
    f_t, f_s, f_r = ((f - mean) * inv_std for f in (f_t, np.asarray(f_s), np.asarray(f_r)))
    out["mapped"] = "z-scores of the paid answers (the loss's own space)"
  elif own_space or f_s.shape[1] != f_t.shape[1]:
    # The answers lived in another space (a defense's per-account transformation): compare
    # through the affine map fitted on one half of the images, evaluated on the other.
    half = len(images) // 2
    f_s, f_r = (_mapped(f[:half], f_t[:half], f[half:]) for f in (f_s, f_r))
    f_t = f_t[half:]
    out["mapped"] = "affine map fitted on the other half (the answers' space differs)"
  for name, f in (("stolen", f_s), ("random", f_r)):
    # Cosine and ℓ2 on normalised features: comparable across encoders of any scale.
    out[f"{name}_cosine"] = float(-losses.distance("cosine", f_t, f))
    out[f"{name}_l2_normalized"] = float(losses.distance(
        "l2", losses.l2_normalize(jnp.asarray(f_t)), losses.l2_normalize(jnp.asarray(f))))
  return out


def _mapped(source, reference, apply_to) -> np.ndarray:
  """``apply_to`` through the least-squares affine map from ``source`` to ``reference``."""
  x = np.concatenate([source, np.ones((len(source), 1), np.float32)], 1)
  w, *_ = np.linalg.lstsq(x, reference, rcond=None)
  return np.concatenate([apply_to, np.ones((len(apply_to), 1), np.float32)], 1) @ w


def pretrain_baseline(config, surrogate, stage, seed, t_start) -> dict:
  """The pre-training-encoder baseline: SimCLR on the surrogate set, target's settings."""
  cfg = config.steal
  base = config.pretrain.copy_and_resolve_references()
  with base.unlocked():
    base.dataset = cfg.surrogate
    base.split = cfg.surrogate_split
    base.num_examples = len(surrogate)
    base.knn.enabled = False
  from stolen_jax.steal.settings import attacker_init_seed
  # The attacker's own initial weights (not the target's, were the seeds equal), trained on
  # its surrogate images themselves where the recipe's image size is theirs.
  own = surrogate if surrogate.images.shape[1] == int(base.image_size) else None
  summary = pretrain.train(base, stage.dir, attacker_init_seed(seed), stage="steal", data=own)
  summary.update(variant="pretrain_encoder", queries=0, queries_this_run=0,
                 surrogate=f"{cfg.surrogate}:{cfg.surrogate_split}", surrogate_size=len(surrogate),
                 stage_dir=stage.dir, wall_s=round(time.perf_counter() - t_start, 2))
  return write_summary(stage, summary, summary.pop("history", []))


def write_summary(stage, summary, history) -> dict:
  """Writes ``summary.json`` (summary + per-epoch history) atomically; returns what it wrote."""
  written = stage.write_summary({**summary, "history": history})
  logging.info("steal summary: %s", json.dumps({k: v for k, v in written.items() if k != "history"}))
  return written
