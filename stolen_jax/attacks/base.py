"""What an attack is: an objective and a query plan, run by one generic trainer.

An attack buys answers from the API by its **query plan** (``query_views``): 0 = one answer
per surrogate image x (|D| queries: StolenEncoder, the conventional attack, Dziedzic et
al.); V > 0 = the answers for V augmented views A_1(x) … A_V(x), fixed once per run
(V·|D| queries: Cont-Steal, RDA's prototypes). ``targets`` turns the paid answers into each
example's training target (RDA: the mean of its views' answers). Every training step the
stolen encoder sees ``student_views`` fresh on-device augmentations of each image (0 = the
clean image) and ``loss`` scores those features against the targets.
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Attack:
  """One registered attack (``steal.attack=name``); hyperparameters in ``steal.<name>``."""
  name: str
  reference: str  # The paper and its public code.
  params: dict  # Defaults of the config block ``steal.<name>`` (may be empty).
  # (block) -> V: 0 = one answer per image x; V > 0 = answers for V augmented views of x.
  query_views: Callable
  # (block) -> S: 0 = the stolen encoder sees x; S > 0 = S fresh augmented views per step.
  student_views: Callable
  # (stolen features (max(S,1), B, d), targets of the batch, key, block) -> (loss, metrics).
  loss: Optional[Callable]
  # (answers (N, d) or (N, V, d), block) -> per-example targets; None: the answers as paid.
  targets: Optional[Callable] = None
  # Its own full train step (StolenEncoder's BatchNorm passes and variants), or None.
  custom_step: bool = False


def normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows scaled to unit ℓ2 norm (torch's F.normalize)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def off_diagonal_logsumexp(logits: jax.Array) -> jax.Array:
  """log Σ_{j≠i} exp(logits[i, j]) per row (the negatives of a contrastive loss)."""
  n = logits.shape[0]
  masked = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
  return jax.nn.logsumexp(masked, axis=1)


def constant(value: int) -> Callable:
  """A plan that does not depend on the attack's settings."""
  return lambda block: value
