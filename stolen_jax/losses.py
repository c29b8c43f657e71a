"""Losses: SimCLR's NT-Xent (Eq. 1) and the stealing distances d of §V (ℓ2, ℓ1, cosine)."""

import jax
import jax.numpy as jnp

from stolen_jax.errors import choose


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along the last axis, as torch.nn.functional.normalize."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """Mean NT-Xent loss over the 2N positive pairs (z1[i], z2[i]) of a (global) batch.

  Row i of the 2N x 2N cosine-similarity matrix has its positive at i±N and every other
  off-diagonal entry as a negative (Eq. 1). The paper sums over pairs; the mean differs by
  the constant 2N and keeps the learning rate independent of the batch size.
  """
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))
  n = z1.shape[0]
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(log_prob[jnp.arange(2 * n), positives])


def _l2(a, b):
  return jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1) + 1e-12)


def _l1(a, b):
  return jnp.sum(jnp.abs(a - b), axis=-1)


def _neg_cosine(a, b):
  return -jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1)


DISTANCES = {"l2": _l2, "l1": _l1, "cosine": _neg_cosine}


# How the official release reduces each distance over the batch: its ℓ2 and ℓ1 losses are a
# per-sample loop that sums, its cosine loss a mean (reference notes) — at batch 64 the cosine
# run takes steps ~64x smaller under SGD, a candidate cause of the paper's cosine gap.
OFFICIAL_REDUCTION = {"l2": "sum", "l1": "sum", "cosine": "mean"}
REDUCTIONS = ("mean", "sum", "official")


def distance(name: str, a: jax.Array, b: jax.Array, reduction: str = "mean") -> jax.Array:
  """d(a, b) per row (§V-A2: ℓ2 = Euclidean distance, ℓ1 = sum of absolute differences,
  cosine = minus cosine similarity), reduced over the batch by ``mean``, ``sum``, or
  ``official`` (per distance as the official code: ℓ2/ℓ1 summed, cosine averaged).

  The ℓ2 distance carries a 1e-12 inside the square root so that its gradient stays
  finite when a == b.
  """
  choose("distance", name, DISTANCES)
  choose("reduction", reduction, REDUCTIONS)
  if reduction == "official":
    reduction = OFFICIAL_REDUCTION[name]
  per_example = DISTANCES[name](a.astype(jnp.float32), b.astype(jnp.float32))
  return jnp.mean(per_example) if reduction == "mean" else jnp.sum(per_example)
