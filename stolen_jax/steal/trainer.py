"""The stolen encoder's trainer: one generic step for every registered attack (its views
through the encoder in one BatchNorm pass, its loss against the paid answers), StolenEncoder's
own step, and the training loop they share (checkpoints, metrics, FLOPs)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax import attacks, metrics, models, optim, parallel, pretrain, train_lib
from stolen_jax import augment as augment_lib
from stolen_jax.attacks import stolenencoder
from stolen_jax.steal.settings import attack_of, attack_settings


def default_one_pass() -> bool:
  """Whether ``bn_passes='separate'`` runs as one grouped pass: on GPU/TPU, where it halves
  the kernel launches of a launch-bound small-batch step; not on CPU, where XLA:CPU ran the
  vmapped convolutions slower (bench/bn_passes.py, small ResNet: 0.48 vs 0.40 s min)."""
  return jax.default_backend() != "cpu"


def build_stolen_model(cfg, target_dim: int | None = None) -> models.Holder:
  """The stolen encoder f_s of ``cfg.arch`` (held under ``encoder`` in its checkpoint),
  mapping linearly to ``target_dim`` when its own feature dimension differs."""
  return models.Holder(models.get(cfg.arch, width=cfg.width, dtype=cfg.dtype, out_dim=target_dim))


def attack_step(state: train_lib.TrainState, batch, *, model, tx, augment, attack: attacks.Attack,
                block, gather=None):
  """One update of the stolen encoder on ``attack``'s loss: its ``student_views`` fresh
  augmentations of the batch (or the clean images) through the encoder in one pass, scored
  against ``batch['target']`` (the answers, or what ``attack.targets`` made of them).

  ``gather`` (a replicated sharding): the features and targets are gathered once before the
  loss, which then runs whole on every device. The contrastive losses compare every pair of
  the batch; left to the partitioner they need several independent all-gathers, which
  XLA:CPU's concurrent thunk executor can start in different orders on different devices —
  a deadlock it ends by aborting the process (seen with RDA's per-view losses on 8 host
  devices). One gather of (views, B, d) features costs nothing next to the encoder."""
  key = train_lib.step_key(state)
  images = batch["images"]
  num_views = attack.student_views(block)
  if num_views == 0:
    inputs = augment_lib.to_float(images)[None]
  else:
    inputs = jnp.stack([augment(images, jax.random.fold_in(key, v)) for v in range(num_views)])
  flat = inputs.reshape((-1,) + inputs.shape[2:])

  def loss_fn(params):
    f, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, flat,
                             train=True, mutable=["batch_stats"])
    f = f.reshape((inputs.shape[0], images.shape[0], -1))
    target = batch["target"]
    if gather is not None:
      f = jax.lax.with_sharding_constraint(f, gather)
      target = jax.lax.with_sharding_constraint(target, gather)
    loss, parts = attack.loss(f, target, jax.random.fold_in(key, 1 << 20), block)
    return loss, (updates["batch_stats"], parts)

  (loss, (stats, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, stats), {"loss": loss, **parts}


def answer_scale(cfg, target_features: np.ndarray):
  """(mean, inverse std) per dimension of the paid answers for ``steal.answer_scaling=
  standardize`` (None otherwise). A dimension constant over the surrogate set gets weight 0:
  it carries nothing to regress, and 1/0 would blow the loss up."""
  if cfg.get("answer_scaling", "none") == "none":
    return None
  answers = np.asarray(target_features, np.float64)
  std = answers.std(axis=0)
  alive = std > 1e-6 * max(float(std.max()), 1e-30)
  inv_std = np.where(alive, 1.0 / np.where(alive, std, 1.0), 0.0)
  return (jnp.asarray(answers.mean(axis=0), jnp.float32), jnp.asarray(inv_std, jnp.float32))


def make_trainer(cfg, total_steps: int, target_dim: int | None = None, mesh=None,
                 scale=None):
  """(model, optimizer, pure step function) of the steal ``cfg``: StolenEncoder's own step,
  or the generic ``attack_step`` with the registered attack's loss (on ``mesh``, if given,
  its loss computed on gathered features). ``scale``: ``answer_scale``'s (mean, inverse
  std), for StolenEncoder's standardised answers."""
  model = build_stolen_model(cfg, target_dim)
  tx = optim.make_optimizer(cfg, total_steps)
  augment = augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))
  attack = attack_of(cfg)
  if attack.custom_step:
    step_fn = functools.partial(
        stolenencoder.steal_step, model=model, tx=tx, augment=augment,
        lambda_=float(cfg.lambda_), distance=cfg.distance, reduction=cfg.reduction,
        normalize=bool(cfg.normalize_features), bn_passes=cfg.bn_passes,
        one_pass=default_one_pass(), answer_scale=scale)
  else:
    step_fn = functools.partial(attack_step, model=model, tx=tx, augment=augment, attack=attack,
                                block=attacks.block_of(cfg, attack),
                                gather=None if mesh is None else parallel.replicated(mesh))
  return model, tx, step_fn


def images_per_example(cfg) -> int:
  """Images through the stolen encoder per surrogate example and step (for throughput)."""
  attack = attack_of(cfg)
  if attack.custom_step:
    return 1 if cfg.lambda_ == 0 else 2
  return max(1, attack.student_views(attacks.block_of(cfg, attack)))


def train_encoder(cfg, images: np.ndarray, target_features: np.ndarray, stage_dir: str, mesh,
                  seed: int, data_for_epoch=None, init_variables=None, **meta_extra):
  """Algorithm 1's training loop: a stolen encoder of ``cfg`` fitted to ``target_features``
  of ``images`` in ``stage_dir`` (checkpoints, metrics). Returns (FitResult, model).
  ``init_variables`` ({'params', 'batch_stats'} of an encoder of ``cfg.arch``): start from
  them instead of a random initialisation (fine-tuning, e.g. embedding a watermark)."""
  name = meta_extra.pop("name", "steal")
  model, tx, step_fn = make_trainer(cfg, (len(images) // cfg.batch_size) * cfg.epochs,
                                    target_dim=target_features.shape[-1], mesh=mesh,
                                    scale=answer_scale(cfg, target_features))
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(seed + 1), sample, mesh)
  if init_variables is not None:
    params = {**state.params, "encoder": init_variables["params"]}
    state = parallel.replicate_tree(state.replace(
        params=params, batch_stats={**state.batch_stats, "encoder": init_variables["batch_stats"]},
        opt_state=tx.init(params)), mesh)
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
        images_per_example=images_per_example(cfg),
        data_for_epoch=data_for_epoch and (lambda epoch: data_for_epoch(epoch, data)),
        name=name)
  finally:
    writer.close()
  return result, model
