"""A sweep's StolenEncoder cells that differ only in λ and d, trained as one stacked
program (``vmap`` over the cells' states; one batch and augmentation pipeline), each then
written as the ordinary stage its single run would have written."""

import dataclasses
import functools
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
from absl import logging

from stolen_jax import checkpoint, defenses, losses, metrics, parallel, pretrain, stages, train_lib
from stolen_jax.errors import ConfigError, choose
from stolen_jax.steal import query as query_lib
from stolen_jax.steal.run import finish, train_alone
from stolen_jax.steal.settings import attack_settings, is_stolenencoder, steal_settings
from stolen_jax.steal.trainer import make_trainer
from stolen_jax.targets import Target

# Settings in which the cells of one stack may differ (the rest is shared: one program).
STACKABLE_AXES = ("lambda_", "distance")


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


def stack_group(config) -> Optional[str]:
  """The key of the stack ``config``'s steal may join (cells with the same key train as one
  program), or None when it cannot be stacked: w/o-aug (λ=0), query-aug, the pre-training
  baseline, the other attacks, HTTP targets, sybil plans, recovering steals and standardised
  answers (their loss constants come from each cell's answers) train alone."""
  cfg = config.steal
  if (not is_stolenencoder(cfg) or cfg.variant != "stolenencoder" or not cfg.lambda_ > 0
      or query_lib.is_remote(cfg.target) or int(cfg.get("sybils", 1)) > 1
      or cfg.get("recover", "none") != "none" or cfg.get("answer_scaling", "none") != "none"):
    return None
  settings = {k: v for k, v in steal_settings(config).items() if k not in STACKABLE_AXES}
  target = stages.plain(cfg.target) if cfg.target else pretrain.stage_settings(config)
  return stages.key_of({"steal": settings, "target": target,
                        "defense": stages.plain(config.get("defense"))})


def run_stack(configs, workdir: str, mesh=None, target: Optional[Target] = None,
              defense: Optional[defenses.Defense] = None) -> list[dict]:
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
  opened = [query_lib.open_steal(c, workdir, mesh, target, defense) for c in configs]
  out = [{**op.done, "restored": True} if op.done is not None else None for op in opened]
  pending = [i for i, op in enumerate(opened) if op.done is None]
  if len(pending) == 1:  # Nothing to stack with: trained as a single run would be.
    out[pending[0]] = train_alone(configs[pending[0]], opened[pending[0]], mesh, t_start)
  if len(pending) <= 1:
    return out
  first = opened[pending[0]]
  cfg, seed = first.cfg, configs[pending[0]].seed
  q = query_lib.query(first, first.stage.dir, seed)  # One query stage for all: they share its key.
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
    out[i] = finish(op, q, cell, model, mesh, configs[i].seed, t_start,
                     stacked_with=len(pending), stack_dir=stack.dir)
  return out
