"""Cont-Steal (Sha et al., "Can't Steal? Cont-Steal! Contrastive Stealing Attacks Against
Image Encoders", CVPR 2023; zeyangsha/Cont-Steal, and ShuchiWu/RDA ``Con-Steal.py``): the
attacker queries *augmented* images and trains the stolen encoder contrastively — the
stolen embedding of another augmentation of the same image is the target answer's positive,
the other images' target answers and stolen embeddings its negatives (τ = 0.07, unit-
normalised embeddings).

Query plan: ``views`` augmented views of each surrogate image, fixed once and each paid
(views·|D| queries; the original re-queries fresh views every epoch, which an equal-budget
comparison cannot afford). Each step pairs a fresh A'(x) through the stolen encoder with
one of x's paid views, drawn at random."""

import jax
import jax.numpy as jnp

from stolen_jax.attacks.base import Attack, normalize, off_diagonal_logsumexp


def loss(stolen, target, key, block):
  """−log e^{t_i·s_i/τ} / (Σ_{j≠i} e^{t_i·s_j/τ} + Σ_{j≠i} e^{s_i·s_j/τ}) over the batch,
  t_i the answer for a random paid view of x_i, s_i = f_s(A'(x_i))."""
  s = normalize(stolen[0])
  b, views = target.shape[0], target.shape[1]
  pick = jax.random.randint(key, (b,), 0, views)
  t = normalize(target[jnp.arange(b), pick])
  ts = t @ s.T / block.temperature
  ss = s @ s.T / block.temperature
  positive = jnp.diagonal(ts)
  negatives = jnp.logaddexp(off_diagonal_logsumexp(ts), off_diagonal_logsumexp(ss))
  loss = jnp.mean(negatives - positive)
  return loss, {"contrastive": loss}


ATTACK = Attack(
    name="contsteal", reference="Sha et al. CVPR 2023 (zeyangsha/Cont-Steal)",
    params={"views": 4, "temperature": 0.07},
    query_views=lambda block: int(block.views), student_views=lambda block: 1, loss=loss)
