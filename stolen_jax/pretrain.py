"""Target-encoder pretraining with SimCLR (§II-A, Eq. 1; settings of §V-A1).

``job='pretrain'`` trains encoder + projection head with NT-Xent over the global batch and
writes an Orbax checkpoint whose ``encoder`` subtree is the target encoder. The same stage,
pointed at a surrogate set, is the paper's *pre-training-encoder* baseline.
"""

import functools
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import logging

from stolen_jax import augment as augment_lib
from stolen_jax import features, losses, metrics, models, optim, parallel, train_lib
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError, choose
from stolen_jax.models.resnet import batch_norm

METHODS = ("simclr", "moco")


class ProjectionHead(nn.Module):
  """MLP head with one hidden layer: Dense -> BN -> ReLU -> Dense (SimCLR's); MoCo v2's has
  no BatchNorm (``use_bn=False``): Dense -> ReLU -> Dense."""
  hidden: int = 512
  out: int = 128
  dtype: Any = jnp.float32
  use_bn: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.hidden, use_bias=not self.use_bn, dtype=self.dtype)(x)
    if self.use_bn:
      x = batch_norm(train, self.dtype)(x)
    x = nn.relu(x)
    return nn.Dense(self.out, dtype=self.dtype)(x).astype(jnp.float32)


class ContrastiveModel(nn.Module):
  """Encoder f and projection head h; returns (f(x), h(f(x)))."""
  encoder: nn.Module
  head: nn.Module

  def __call__(self, x, train: bool = False):
    feats = self.encoder(x, train)
    return feats, self.head(feats, train)


def build_model(cfg) -> ContrastiveModel:
  """The encoder of ``cfg.arch`` with its projection head."""
  encoder = models.get(cfg.arch, width=cfg.width, dtype=cfg.dtype)
  head = ProjectionHead(cfg.proj_hidden, cfg.proj_dim, dtype=encoder.dtype,
                        use_bn=cfg.method == "simclr")
  return ContrastiveModel(encoder, head)


def augment_params(cfg) -> augment_lib.AugmentParams:
  """AugmentParams from a stage config's ``image_size`` and ``aug`` block."""
  a = cfg.aug
  return augment_lib.AugmentParams(
      image_size=cfg.image_size, crop_scale=tuple(a.crop_scale), crop_ratio=tuple(a.crop_ratio),
      flip_p=a.flip_p, jitter=tuple(a.jitter), jitter_p=a.jitter_p, grayscale_p=a.grayscale_p)


def simclr_step(state: train_lib.TrainState, batch, *, model, tx, augment, temperature: float):
  """One SimCLR update: two augmented views per image, NT-Xent over the global batch."""
  key1, key2 = jax.random.split(train_lib.step_key(state))
  images = batch["images"]
  views = jnp.concatenate([augment(images, key1), augment(images, key2)])

  def loss_fn(params):
    (_, z), updates = model.apply({"params": params, "batch_stats": state.batch_stats}, views,
                                  train=True, mutable=["batch_stats"])
    z1, z2 = jnp.split(z, 2)
    return losses.nt_xent(z1, z2, temperature), updates["batch_stats"]

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, batch_stats), {"loss": loss}


def make_trainer(cfg, total_steps: int):
  """(model, optimizer, pure step function) of the pretraining ``cfg``."""
  choose("pretraining method", cfg.method, METHODS)
  model = build_model(cfg)
  tx = optim.make_optimizer(cfg, total_steps)
  augment = augment_lib.make_augment(cfg.augment, augment_params(cfg))
  if cfg.method == "moco":
    from stolen_jax import moco
    step_fn = functools.partial(moco.moco_step, model=model, tx=tx, augment=augment,
                                temperature=cfg.moco.temperature, momentum=cfg.moco.momentum,
                                bn_groups=cfg.moco.bn_groups)
  else:
    step_fn = functools.partial(simclr_step, model=model, tx=tx, augment=augment,
                                temperature=cfg.temperature)
  return model, tx, step_fn


def initial_extra(cfg, seed: int):
  """The trainer-specific part of the initial state (MoCo's key encoder and queue)."""
  if cfg.method != "moco":
    return None
  from stolen_jax import moco
  if cfg.moco.queue_size % cfg.batch_size:
    raise ConfigError(f"pretrain.moco.queue_size={cfg.moco.queue_size} must be a multiple of "
                      f"batch_size={cfg.batch_size}")
  return moco.initial_extra(jax.random.PRNGKey(seed + 17), cfg.moco.queue_size, cfg.proj_dim)


def encoder_meta(cfg, encoder, stage: str, **extra) -> dict:
  """The JSON record that lets evaluation rebuild this encoder from its checkpoint."""
  return {"stage": stage, "arch": cfg.arch, "width": float(cfg.width), "dtype": cfg.dtype,
          "image_size": int(cfg.image_size), "feature_dim": int(encoder.feature_dim), **extra}


def make_knn_monitor(cfg, encoder, mesh, seed: int):
  """Returns ``monitor(variables) -> accuracy`` on a labeled split, or None when disabled."""
  k = cfg.knn
  if not k.enabled:
    return None
  spec = k.dataset or cfg.dataset
  bank = sources.load(spec, k.train_split, image_size=cfg.image_size, num_examples=k.num_train,
                      seed=seed, data_dir=cfg.data_dir)
  test = sources.load(spec, k.test_split, image_size=cfg.image_size, num_examples=k.num_test,
                      seed=seed + 1, data_dir=cfg.data_dir)
  if bank.labels is None or test.labels is None:
    raise ConfigError(f"the kNN monitor needs a labeled dataset; {spec} has no labels "
                      "(set knn.dataset or knn.enabled=False)")
  feature_fn = features.make_feature_fn(encoder)

  def monitor(variables) -> float:
    bank_f = features.extract(feature_fn, variables, bank.images, mesh)
    test_f = features.extract(feature_fn, variables, test.images, mesh)
    return features.knn_accuracy(bank_f, bank.labels, test_f, test.labels,
                                 max(bank.num_classes or 0, test.num_classes or 0), k=k.k,
                                 temperature=k.temperature)
  return monitor


def stage_settings(config) -> dict:
  """What determines a target encoder (its stage key): the pretraining block and the seed."""
  from stolen_jax import stages
  return {**stages.settings_of(config.pretrain), "seed": target_seed(config)}


def open_stage(config, workdir: str, strict: bool = False):
  """(the keyed pretraining stage of ``config`` in ``workdir``, its loaded data): the key
  covers the settings and the images' content, so a changed dataset file is a new target."""
  from stolen_jax import stages
  from stolen_jax.eaas.cache import fingerprint
  data = load_data(config.pretrain, target_seed(config))
  stage = stages.open_stage(workdir, "pretrain", stage_settings(config),
                            upstream={"images": fingerprint(data.images)}, strict=strict)
  return stage, data


def target_seed(config) -> int:
  """The seed of the target's pretraining: ``target_seed`` if set, else ``seed``."""
  seed = config.get("target_seed")
  return config.seed if seed is None else seed


def validate_settings(cfg) -> None:
  """Checks the pretraining counts and rates before any stage runs."""
  choose("pretrain.method", cfg.method, METHODS)
  for key in ("epochs", "batch_size", "image_size"):
    if not isinstance(cfg[key], int) or cfg[key] < 1:
      raise ConfigError(f"pretrain.{key}={cfg[key]!r} must be an integer >= 1")
  if not (cfg.lr > 0 and cfg.lr < float("inf")):
    raise ConfigError(f"pretrain.lr={cfg.lr} must be a finite number > 0")
  if cfg.temperature <= 0:
    raise ConfigError(f"pretrain.temperature={cfg.temperature} must be > 0")
  if cfg.num_examples is not None:
    n = cfg.num_examples
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0 or (n > 1 and not float(n).is_integer()):
      raise ConfigError(f"pretrain.num_examples={n!r}: give a count >= 1 or a fraction in (0, 1]")
    if n >= 1 and n < cfg.batch_size:
      raise ConfigError(f"pretrain.num_examples={n} is smaller than pretrain.batch_size="
                        f"{cfg.batch_size}: not one training step per epoch")
  if cfg.knn.enabled and (not isinstance(cfg.knn.k, int) or cfg.knn.k < 1):
    raise ConfigError(f"pretrain.knn.k={cfg.knn.k!r} must be an integer >= 1")


def encoder_variables(state: train_lib.TrainState) -> dict:
  """The encoder's variables inside a trainer's state."""
  return {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}


def load_data(cfg, seed: int) -> sources.ImageSet:
  """The pretraining set of ``cfg``."""
  return sources.load(cfg.dataset, cfg.split, image_size=cfg.image_size,
                      num_examples=cfg.num_examples, seed=seed, data_dir=cfg.data_dir)


def train(cfg, workdir: str, seed: int, mesh=None, stage: str = "pretrain",
          data: sources.ImageSet | None = None) -> dict:
  """Runs contrastive pretraining per ``cfg`` (a ``config.pretrain`` block) in ``workdir``
  (on ``data`` if given, else ``load_data``).

  Returns (and writes to ``workdir/summary.json``) the run's summary.
  """
  choose("pretraining method", cfg.method, METHODS)
  mesh = mesh or parallel.make_mesh()
  t_start = time.perf_counter()
  data = data if data is not None else load_data(cfg, seed)
  logging.info("%s: %d images from %s", stage, len(data), data.name)
  model, tx, step_fn = make_trainer(cfg, (len(data) // cfg.batch_size) * cfg.epochs)
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(seed), sample, mesh,
                                 extra=initial_extra(cfg, seed))
  images = parallel.put_replicated(data.images, mesh)
  monitor = make_knn_monitor(cfg, model.encoder, mesh, seed)
  writer = metrics.Writer(workdir)
  knn_init = None
  if monitor is not None and parallel.agree(not os.path.exists(os.path.join(workdir, "checkpoints"))):
    knn_init = monitor(encoder_variables(state))
    logging.info("%s: kNN accuracy at random init: %.4f", stage, knn_init)

  def on_epoch_end(epoch, state):
    last = epoch == cfg.epochs - 1
    if monitor is not None and (last or (epoch + 1) % cfg.knn.every_epochs == 0):
      acc = monitor(encoder_variables(state))
      logging.info("%s: epoch %d kNN accuracy %.4f", stage, epoch + 1, acc)
      return {"knn_accuracy": acc}
    return {}

  meta = encoder_meta(cfg, model.encoder, stage, method=cfg.method, dataset=cfg.dataset,
                      num_images=len(data))
  result = train_lib.fit(
      state, step_fn, {"images": images}, num_examples=len(data), batch_size=cfg.batch_size,
      epochs=cfg.epochs, seed=seed, mesh=mesh, checkpoint_dir=os.path.join(workdir, "checkpoints"),
      meta=meta, writer=writer, steps_per_dispatch=cfg.steps_per_dispatch,
      checkpoint_every_epochs=cfg.checkpoint_every_epochs, log_every_steps=cfg.log_every_steps,
      images_per_example=2, on_epoch_end=on_epoch_end, name=stage)
  writer.close()
  summary = _summary(workdir, meta, result, knn_init, len(data), time.perf_counter() - t_start)
  return summary


def _summary(workdir, meta, result: train_lib.FitResult, knn_init, num_images, wall_s) -> dict:
  path = os.path.join(workdir, "summary.json")
  from stolen_jax import stages
  previous = stages.read_json(path) or {}
  last = result.history[-1] if result.history else {}
  knn_history = [h["knn_accuracy"] for h in result.history if "knn_accuracy" in h]
  summary = {
      **previous, **meta, "num_images": num_images, "final_step": int(result.state.step),
      "resumed_from_step": result.resumed_from_step, "wall_s": round(wall_s, 2),
      "compile_s": round(result.compile_s, 2), "train_s": round(result.train_s, 2),
      "images_per_s": round(result.images_per_s, 1), "steps_per_s": round(result.steps_per_s, 3),
      "complete": True,  # fit() returns only after the last epoch's checkpoint.
  }
  if "loss" in last:
    summary["final_loss"] = last["loss"]
  if knn_init is not None:
    summary["knn_accuracy_init"] = knn_init
  if knn_history:
    summary["knn_accuracy"] = knn_history[-1]
  summary["history"] = previous.get("history", []) + result.history
  from stolen_jax import stages
  stages.write_json_atomic(path, summary, indent=2)
  return summary
