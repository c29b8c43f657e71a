"""``steal.answer_scaling=standardize``: StolenEncoder's loss on per-dimension z-scores of the
answers (a real encoder's pooled ReLU features share a large offset that an ℓ2-normalised
distance otherwise spends itself on)."""

import numpy as np
import pytest

from conftest import tiny_steal_config
from stolen_jax import stages, steal
from stolen_jax.errors import ConfigError
from stolen_jax.steal import stack
from stolen_jax.steal.settings import steal_settings
from stolen_jax.steal.trainer import answer_scale


def test_the_scale_gives_z_scores_and_ignores_constant_dimensions():
  rng = np.random.default_rng(0)
  answers = np.concatenate([np.full((50, 1), 7.0), 100 + 3 * rng.normal(size=(50, 4))], axis=1)
  cfg = tiny_steal_config("unused", answer_scaling="standardize").steal
  mean, inv_std = (np.asarray(a) for a in answer_scale(cfg, answers))
  assert inv_std[0] == 0  # Constant over the surrogate set: nothing to regress, no 1/0.
  z = (answers - mean) * inv_std
  np.testing.assert_allclose(z[:, 1:].mean(axis=0), 0, atol=1e-4)
  np.testing.assert_allclose(z[:, 1:].std(axis=0), 1, rtol=1e-4)
  assert answer_scale(tiny_steal_config("unused").steal, answers) is None


def test_the_option_has_its_own_key_and_leaves_the_others_unchanged():
  plain, scaled = tiny_steal_config("t"), tiny_steal_config("t", answer_scaling="standardize")
  assert "answer_scaling" not in steal_settings(plain)  # Existing stages keep their keys.
  assert stages.key_of(steal_settings(plain)) != stages.key_of(steal_settings(scaled))
  assert stack.stack_group(scaled) is None  # Its loss constants come from its own answers.
  with pytest.raises(ConfigError, match="valid choices"):
    steal.validate_settings(tiny_steal_config("t", answer_scaling="zscore").steal)
  with pytest.raises(ConfigError, match="StolenEncoder option"):
    steal.validate_settings(tiny_steal_config("t", answer_scaling="standardize",
                                              attack="conventional").steal)


def test_a_standardised_steal_is_compared_in_its_losss_space(tiny_target, tmp_path):
  """The stolen encoder is compared with the target as its loss compares them, as z-scores of
  the paid answers (with normalised z-scores a feature's distance from the answers' mean is
  free, so a cosine in the target's own space means nothing), and the summary says how it
  was trained."""
  config = tiny_steal_config(tiny_target, answer_scaling="standardize", eval_heldout=16,
                             epochs=10)
  out = steal.run(config, str(tmp_path))
  assert out["answer_scaling"] == "standardize"
  assert out["queries"] == 32 and np.isfinite(out["final_loss"])
  assert "z-scores" in out["heldout"]["mapped"]
  assert out["heldout"]["stolen_cosine"] > out["heldout"]["random_cosine"]
