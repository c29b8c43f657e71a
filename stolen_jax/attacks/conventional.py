"""The conventional (direct-extraction) attack: regress f_t(x) with the mean squared error
between the unit-normalised features of the stolen and the target encoder on the queried
images themselves (Sha et al., CVPR 2023, its baseline; Dziedzic et al. 2022's MSE attack;
reimplemented after ShuchiWu/RDA ``Conventional_Attack.py``). One query per image, no
augmentation: the baseline StolenEncoder's augmented term L2 improves on."""

import jax.numpy as jnp

from stolen_jax.attacks.base import Attack, constant, normalize


def loss(stolen, target, key, block):
  """MSE (mean over batch and dimensions) between normalised f_s(x) and f_t(x)."""
  del key, block
  mse = jnp.mean(jnp.square(normalize(stolen[0]) - normalize(target)))
  return mse, {"mse": mse}


ATTACK = Attack(
    name="conventional", reference="Sha et al. CVPR 2023 (baseline); Dziedzic et al. 2022 (MSE)",
    params={}, query_views=constant(0), student_views=constant(0), loss=loss)
