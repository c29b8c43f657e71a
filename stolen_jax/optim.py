"""Optimizers from config: ``adam`` (PyTorch semantics: L2 weight decay added to the
gradient), ``adamw`` (decoupled decay) and ``sgd`` (momentum, L2 decay), at a constant
or cosine-decayed learning rate."""

import optax

from stolen_jax.errors import choose

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def learning_rate(cfg, total_steps: int):
  """The schedule: a float or an optax schedule over ``total_steps``."""
  choose("lr schedule", cfg.get("schedule", "constant"), SCHEDULES)
  if cfg.get("schedule", "constant") == "cosine":
    return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
  return cfg.lr


def make_optimizer(cfg, total_steps: int = 1) -> optax.GradientTransformation:
  """Builds ``cfg.optimizer`` with ``cfg.lr``, ``cfg.weight_decay`` and (sgd) ``cfg.momentum``."""
  name = choose("optimizer", cfg.optimizer, OPTIMIZERS)
  lr = learning_rate(cfg, total_steps)
  wd = cfg.get("weight_decay", 0.0)
  if name == "adamw":
    return optax.adamw(lr, weight_decay=wd)
  if name == "adam":
    base = optax.adam(lr)
  else:
    base = optax.sgd(lr, momentum=cfg.get("momentum", 0.9) or None)
  # torch.optim.Adam/SGD add weight_decay * param to the gradient before the update.
  return optax.chain(optax.add_decayed_weights(wd), base) if wd else base
