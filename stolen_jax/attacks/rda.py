"""RDA (Wu et al., "Refine, Discriminate and Align: Stealing Encoders via Sample-Wise
Prototypes and Multi-Relational Extraction", ECCV 2024; ShuchiWu/RDA ``RDA.py``).

* **Refine** — the query plan: ``prototype_views`` augmented views of each surrogate image
  are answered (prototype_views·|D| queries) and averaged, unit-normalised first, into the
  image's *sample-wise prototype* (the target's view-invariant answer; not renormalised, as
  in the code's ``chunk_avg``).
* **Discriminate and align** — the objective, for each of ``student_views`` fresh
  augmentations s of x per step (one BatchNorm pass over all of them), against the
  prototype p: α · [−log e^{s_i·p_i/τ} / (Σ_{j≠i} e^{s_i·p_j/τ} + Σ_{j≠i} e^{s_i·s_j/τ})]
  + β · [−log((cos(s_i, p_i) + 1) / ‖s_i − p_i‖²)], averaged over the views
  (τ = 0.07, α = β = 1)."""

import jax.numpy as jnp

from stolen_jax.attacks.base import Attack, normalize, off_diagonal_logsumexp

_EPS = 1e-8  # ‖s − p‖² can reach 0 when s matches p exactly; the code has no guard.


def prototypes(answers, block):
  """The sample-wise prototypes: the mean of each image's normalised view answers."""
  del block
  return jnp.mean(normalize(jnp.asarray(answers)), axis=1)


def _one_view(s, p, block):
  sp = s @ p.T / block.temperature
  ss = s @ s.T / block.temperature
  positive = jnp.diagonal(sp)
  negatives = jnp.logaddexp(off_diagonal_logsumexp(sp), off_diagonal_logsumexp(ss))
  discriminate = jnp.mean(negatives - positive)
  cos = jnp.sum(s * p, axis=1) / jnp.maximum(jnp.linalg.norm(p, axis=1), 1e-12)
  align = jnp.mean(-jnp.log((cos + 1.0 + _EPS) / (jnp.sum(jnp.square(s - p), axis=1) + _EPS)))
  return discriminate, align


def loss(stolen, target, key, block):
  """α·discriminate + β·align, averaged over the stolen views."""
  del key
  parts = [_one_view(normalize(view), target, block) for view in stolen]
  discriminate = sum(d for d, _ in parts) / len(parts)
  align = sum(a for _, a in parts) / len(parts)
  total = block.alpha * discriminate + block.beta * align
  return total, {"discriminate": discriminate, "align": align}


ATTACK = Attack(
    name="rda", reference="Wu et al. ECCV 2024 (ShuchiWu/RDA)",
    params={"prototype_views": 10, "student_views": 5, "temperature": 0.07, "alpha": 1.0,
            "beta": 1.0},
    query_views=lambda block: int(block.prototype_views),
    student_views=lambda block: int(block.student_views), loss=loss, targets=prototypes)
