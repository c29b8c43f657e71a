import json

import numpy as np
import pytest

from stolen_jax import eaas
from stolen_jax.errors import DataError


class Crash(Exception):
  pass


def fake_target(fail_after_calls=None):
  """A deterministic 'encoder' (mean colour x 3) that can crash after some calls."""
  calls = {"n": 0}

  def features(images):
    calls["n"] += 1
    if fail_after_calls is not None and calls["n"] > fail_after_calls:
      raise Crash("killed")
    return np.repeat(images.reshape(len(images), -1, 3).mean(1), 2, axis=1)
  return features


def images(n=40):
  return np.random.default_rng(0).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)


def test_counts_and_budget_refusal_pays_nothing(tmp_path):
  service = eaas.QueryService(fake_target(), budget=50, log_path=str(tmp_path / "q.jsonl"))
  assert service.query(images(30)).shape == (30, 6)
  with pytest.raises(eaas.QueryBudgetExceeded, match="20 remain"):
    service.query(images(21))
  assert service.queries_used == 30
  service.query(images(20))
  assert service.queries_used == 50 and service.remaining == 0
  # The log persists the count: a new service over the same log knows what was spent.
  assert eaas.QueryService(fake_target(), log_path=str(tmp_path / "q.jsonl")).queries_used == 50
  assert [json.loads(l)["count"] for l in open(tmp_path / "q.jsonl")] == [30, 20]


def test_defense_applies_to_answers():
  service = eaas.QueryService(fake_target(), defense=lambda f, images: np.round(f, -1))
  assert np.all(service.query(images(5)) % 10 == 0)


def test_rerun_of_finished_query_stage_costs_zero(tmp_path):
  x = images()
  fp = eaas.cache.fingerprint(x)
  s1 = eaas.QueryService(fake_target())
  f1 = eaas.query_with_cache(s1, x, eaas.FeatureCache(str(tmp_path), "d", len(x), fp), 16)
  assert s1.queries_used == 40
  s2 = eaas.QueryService(fake_target())
  f2 = eaas.query_with_cache(s2, x, eaas.FeatureCache(str(tmp_path), "d", len(x), fp), 16)
  assert s2.queries_used == 0
  np.testing.assert_array_equal(f1, f2)


def test_killed_query_stage_pays_exactly_d_in_total(tmp_path):
  x = images()
  fp = eaas.cache.fingerprint(x)
  crashed = eaas.QueryService(fake_target(fail_after_calls=2))
  with pytest.raises(Crash):
    eaas.query_with_cache(crashed, x, eaas.FeatureCache(str(tmp_path), "d", len(x), fp), 8)
  assert crashed.queries_used == 16
  rerun = eaas.QueryService(fake_target())
  f = eaas.query_with_cache(rerun, x, eaas.FeatureCache(str(tmp_path), "d", len(x), fp), 8)
  assert crashed.queries_used + rerun.queries_used == len(x)
  np.testing.assert_allclose(f, fake_target()(x), rtol=1e-6)


def test_budget_too_small_fails_clearly_and_pays_nothing_beyond(tmp_path):
  x = images()
  service = eaas.QueryService(fake_target(), budget=20)
  with pytest.raises(eaas.QueryBudgetExceeded):
    eaas.query_with_cache(service, x, eaas.FeatureCache(str(tmp_path), "d", len(x),
                                                        eaas.cache.fingerprint(x)), 8)
  assert service.queries_used == 0  # Checked for all 40 before the first query.


def test_cache_for_other_images_is_refused(tmp_path):
  x = images()
  eaas.query_with_cache(eaas.QueryService(fake_target()), x,
                        eaas.FeatureCache(str(tmp_path), "d", len(x), eaas.cache.fingerprint(x)))
  with pytest.raises(DataError, match="holds answers for other images"):
    eaas.FeatureCache(str(tmp_path), "d", len(x), eaas.cache.fingerprint(x[::-1]))
