"""Dziedzic et al. 2022, "On the Difficulty of Defending Self-Supervised Learning against
Model Extraction" (ICML; cleverhans-lab/ssl-attacks-defenses ``simclr.py`` ``steal``): the
stolen encoder's representations of the queried images are pulled to the victim's with a
contrastive loss over the batch, the stolen/victim pair of an image its positive:

* ``dziedzic_infonce``: SimCLR's NT-Xent over the 2B rows [f_s(x); f_t(x)] (cosine
  similarities / τ, every other row a negative), τ = 0.07;
* ``dziedzic_softnn``: the soft-nearest-neighbour loss (Frosst et al. 2019) over the same 2B
  rows with squared Euclidean distances / T on the raw features, T = 100.

One query per image (the victim answers the images the stolen encoder trains on)."""


import jax.numpy as jnp

from stolen_jax.attacks.base import Attack, constant, normalize, off_diagonal_logsumexp


def _pair_index(b: int) -> jnp.ndarray:
  """Row i's positive in [f_s; f_t]: i+B for a stolen row, i-B for a victim row."""
  return jnp.concatenate([jnp.arange(b) + b, jnp.arange(b)])


def infonce_loss(stolen, target, key, block):
  """NT-Xent over [f_s(x); f_t(x)] with τ = ``block.temperature``."""
  del key
  feats = normalize(jnp.concatenate([stolen[0], target]))
  logits = feats @ feats.T / block.temperature
  b = stolen.shape[1]
  positive = logits[jnp.arange(2 * b), _pair_index(b)]
  loss = jnp.mean(off_diagonal_logsumexp(logits) - positive)
  return loss, {"infonce": loss}


def softnn_loss(stolen, target, key, block):
  """Soft nearest neighbours over [f_s(x); f_t(x)]: −mean log(Σ_pos e^{−d²/T} / Σ_{j≠i}
  e^{−d²/T}), the only positive of a row being its pair."""
  del key
  feats = jnp.concatenate([stolen[0], target])
  sq = jnp.sum(jnp.square(feats), axis=1)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0.0)
  logits = -dist / block.temperature
  b = stolen.shape[1]
  positive = logits[jnp.arange(2 * b), _pair_index(b)]
  loss = jnp.mean(off_diagonal_logsumexp(logits) - positive)
  return loss, {"softnn": loss}


INFONCE = Attack(
    name="dziedzic_infonce", reference="Dziedzic et al. ICML 2022 (cleverhans-lab/ssl-attacks-defenses)",
    params={"temperature": 0.07}, query_views=constant(0), student_views=constant(0),
    loss=infonce_loss)
SOFTNN = Attack(
    name="dziedzic_softnn", reference="Dziedzic et al. ICML 2022 (cleverhans-lab/ssl-attacks-defenses)",
    params={"temperature": 100.0}, query_views=constant(0), student_views=constant(0),
    loss=softnn_loss)
