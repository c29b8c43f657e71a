import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stolen_jax import losses
from stolen_jax.errors import ConfigError


def test_nt_xent_hand_computed():
  z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  z2 = jnp.array([[1.0, 0.0], [0.0, -1.0]])
  t = 0.5
  # Cosine similarities of the 4 views [a1, b1, a2, b2] = [(1,0), (0,1), (1,0), (0,-1)].
  sims = np.array([[1, 0, 1, 0], [0, 1, 0, -1], [1, 0, 1, 0], [0, -1, 0, 1]], float) / t
  pos = [2, 3, 0, 1]
  expected = np.mean([-(sims[i, pos[i]] - np.log(sum(np.exp(sims[i, k]) for k in range(4) if k != i)))
                      for i in range(4)])
  assert float(losses.nt_xent(z1, z2, t)) == pytest.approx(expected, rel=1e-6)
  # Scale invariance: NT-Xent uses cosine similarity.
  assert float(losses.nt_xent(3 * z1, 0.5 * z2, t)) == pytest.approx(expected, rel=1e-6)


def test_distances_hand_computed():
  a = jnp.array([[3.0, 4.0], [1.0, 1.0]])
  b = jnp.array([[0.0, 0.0], [1.0, -1.0]])
  assert float(losses.distance("l2", a, b)) == pytest.approx((5.0 + 2.0) / 2, rel=1e-5)
  assert float(losses.distance("l2", a, b, "sum")) == pytest.approx(7.0, rel=1e-5)
  assert float(losses.distance("l1", a, b)) == pytest.approx((7.0 + 2.0) / 2)
  # cosine: row 0 has b = 0 (normalised to 0) -> 0; row 1: (1,1).(1,-1) = 0.
  assert float(losses.distance("cosine", a, b)) == pytest.approx(0.0, abs=1e-6)
  assert float(losses.distance("cosine", a, 2 * a)) == pytest.approx(-1.0, rel=1e-6)


def test_unknown_distance():
  with pytest.raises(ConfigError, match="cosine"):
    losses.distance("l3", jnp.zeros((1, 2)), jnp.zeros((1, 2)))


def test_official_reduction_sums_l2_and_l1_and_averages_cosine():
  a = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
  b = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
  for name, kind in (("l2", "sum"), ("l1", "sum"), ("cosine", "mean")):
    np.testing.assert_allclose(losses.distance(name, a, b, "official"),
                               losses.distance(name, a, b, kind), rtol=1e-6)
