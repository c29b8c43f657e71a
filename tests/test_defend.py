"""Defenses of §VII: exact semantics, the poison bound and objective, and their reach."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_pretrain_block, tiny_steal_config
from stolen_jax import defaults, defenses, eaas, jobs, pipeline
from stolen_jax.errors import ConfigError, DataError


def _features(n=16, d=32, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _cfg(**kw):
  c = defaults.defense_block()
  for k, v in kw.items():
    c[k] = v
  return c


def test_topk_keeps_exactly_k_largest_magnitudes():
  f = _features()
  out = np.asarray(defenses.topk.topk(jnp.asarray(f), 5))
  assert np.all((out != 0).sum(1) == 5)
  for row, orig in zip(out, f):
    kept = np.flatnonzero(row)
    assert np.all(row[kept] == orig[kept])
    assert np.min(np.abs(orig[kept])) >= np.max(np.abs(np.delete(orig, kept)))


def test_rounding_is_exact():
  f = _features() * 3
  images = np.zeros((len(f), 2, 2, 3), np.uint8)
  for m in (0, 1, 2, 3):
    np.testing.assert_array_equal(np.asarray(defenses.rounding.round_features(jnp.asarray(f), m)),
                                  np.round(f, m))
    # As the service applies it (jitted).
    np.testing.assert_array_equal(defenses.make(_cfg(name="round", decimals=m))(f, images),
                                  np.round(f, m))


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("normalize", [True, False])
def test_poison_respects_the_bound_and_beats_zero_and_random(norm, normalize):
  target, clean, aug = _features(seed=0), _features(seed=1), _features(seed=2)
  eps = 0.5 if norm == "l2" else 0.05
  keys = jax.random.split(jax.random.PRNGKey(0), len(target))
  kw = dict(distance="l2", lambda_=20.0, normalize=normalize)
  delta = defenses.poison.poison_perturbation(jnp.asarray(target), jnp.asarray(clean), jnp.asarray(aug),
                                     keys, epsilon=eps, norm=norm, steps=20, step_size=0.0, **kw)
  delta = np.asarray(delta)
  size = np.linalg.norm(delta, axis=1) if norm == "l2" else np.abs(delta).max(1)
  assert np.all(size <= eps * (1 + 1e-5))
  objective = lambda d: np.asarray(defenses.poison.poison_objective(jnp.asarray(d), target, clean, aug, **kw))
  rng = np.random.default_rng(3)
  rand = rng.normal(size=delta.shape) if norm == "l2" else np.sign(rng.normal(size=delta.shape))
  rand = rand / np.linalg.norm(rand, axis=1, keepdims=True) * eps if norm == "l2" else rand * eps
  assert np.all(objective(delta) >= objective(np.zeros_like(delta)) - 1e-6)
  assert objective(delta).mean() > objective(np.zeros_like(delta)).mean()
  assert objective(delta).mean() > objective(rand).mean()


def test_noise_is_deterministic_per_image_and_batch_independent():
  images = np.random.default_rng(0).integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
  d = defenses.make(_cfg(name="noise", scale=0.5))
  f = _features(6, 8)
  whole = d(f, images)
  parts = np.concatenate([d(f[:2], images[:2]), d(f[2:], images[2:])])
  np.testing.assert_allclose(whole, parts, rtol=1e-6)
  assert np.abs(whole - f).mean() > 0.1


@pytest.mark.parametrize("kw,message", [
    (dict(name="topk", k=0), "defense.k=0"),
    (dict(name="topk", k=999), "exceeds the target's feature dimension"),
    (dict(name="round", decimals=-1), "defense.decimals=-1"),
    (dict(name="poison", epsilon=-1.0), "defense.epsilon=-1.0"),
    (dict(name="poison", norm="l3"), "unknown defense.norm 'l3'"),
    (dict(name="shield"), "unknown defense.name 'shield'"),
])
def test_bad_defense_parameters_are_one_error(kw, message):
  with pytest.raises(ConfigError, match=message):
    defenses.validate(_cfg(**kw), feature_dim=64)


def test_bad_defense_fails_before_any_stage(tmp_path):
  config = tiny_steal_config(None)
  config.job = "pipeline"
  config.defense.name, config.defense.norm = "poison", "l3"
  with pytest.raises(ConfigError, match="defense.norm"):
    jobs.run(config, str(tmp_path))
  assert not (tmp_path / "pretrain").exists()


def test_cache_made_under_one_defense_is_refused_under_another(tmp_path):
  x = np.random.default_rng(0).integers(0, 255, (8, 4, 4, 3), dtype=np.uint8)
  fp = eaas.cache.fingerprint(x)
  fn = lambda im: im.reshape(len(im), -1)[:, :6].astype(np.float32)
  eaas.query_with_cache(eaas.QueryService(fn), x, eaas.FeatureCache(
      str(tmp_path), "s", 8, {"images": fp, "defense": "round2"}))
  with pytest.raises(DataError, match="other defense"):
    eaas.FeatureCache(str(tmp_path), "s", 8, {"images": fp, "defense": "topk5"})


def _tiny_pipeline(**defense):
  from test_probe import tiny_probe_block
  config = tiny_steal_config(None, epochs=1)
  config.job = "pipeline"
  config.pretrain = tiny_pretrain_block(epochs=1)
  config.probe = tiny_probe_block(epochs=2)
  for k, v in defense.items():
    config.defense[k] = v
  return config


def test_a_defense_changes_what_attacker_and_target_probe_see(tmp_path):
  base = pipeline.run(_tiny_pipeline(), str(tmp_path))
  top = pipeline.run(_tiny_pipeline(name="topk", k=3), str(tmp_path))
  # The attacker's answers: a separate query stage, re-paid, with exactly 3 non-zeros.
  query_dirs = sorted((tmp_path / "query").iterdir())
  assert len(query_dirs) == 2
  answers = {json.load(open(d / "stage.json"))["upstream"]["defense"]["name"]:
             np.load(d / "surrogate.features.npy") for d in query_dirs}
  assert np.all((answers["topk"] != 0).sum(1) == 3) and np.all((answers["none"] != 0).sum(1) > 3)
  # The target's probe sees defended features too, and the honest customers' cost is reported.
  row = top["rows"][0]
  assert "ta_undefended" in row and row["ta_undefended"] == base["rows"][0]["ta"]
  assert row["utility_cosine"] < 0.999
  md = open(tmp_path / "results.md").read()
  assert "Defense: name=topk, k=3" in md and "TA undefended (%)" in md


def test_poison_trains_a_shadow_once_and_perturbs_within_the_bound(tmp_path):
  config = _tiny_pipeline(name="poison", epsilon=0.05, norm="linf", steps=3)
  out = pipeline.run(config, str(tmp_path))
  assert "shadow" in out["stage_times"] and len(list((tmp_path / "shadow").iterdir())) == 1
  query_dir = next((tmp_path / "query").iterdir())
  poisoned = np.load(query_dir / "surrogate.features.npy")
  # Undefended answers of the same images, straight from the target.
  from stolen_jax import parallel, steal
  target = steal.open_target(str(next((tmp_path / "pretrain").iterdir())), parallel.make_mesh())
  from stolen_jax.data import sources
  s = config.steal
  images = sources.load(s.surrogate, s.surrogate_split, image_size=s.image_size,
                        num_examples=s.surrogate_size, seed=config.seed).images
  delta = poisoned - target.features_fn(images)
  assert np.abs(delta).max() <= 0.05 + 1e-5 and np.abs(delta).max() > 0.01
  again = pipeline.run(config, str(tmp_path))
  assert again["stage_times"]["steal"] == "restored"


def test_one_shadow_serves_every_surrogate_and_an_older_key_is_reused(tmp_path):
  """The shadow trains on the provider's data: cells that differ only in the attacker's
  surrogate set (or in its batch, with ``defense.shadow.batch_size`` pinned) share it, and a
  finished shadow whose older key also held the surrogate settings is reused, not retrained;
  the poisoned answers are keyed by the shadow they came from."""
  from stolen_jax import stages
  from stolen_jax.defenses import shadow as shadow_lib
  config = _tiny_pipeline(name="poison", epsilon=0.05, norm="linf", steps=2)
  pipeline.run(config, str(tmp_path))
  (first,) = list((tmp_path / "shadow").iterdir())
  query = json.load(open(next((tmp_path / "query").iterdir()) / "stage.json"))
  assert query["upstream"]["defense"]["shadow"] == first.name
  # An older workdir's key: the same shadow, its key also holding the surrogate's settings.
  record = json.load(open(first / "stage.json"))
  record["settings"]["attack"].update(surrogate="embedded:textures", surrogate_size=32)
  legacy = stages.key_of({"settings": record["settings"], "upstream": record["upstream"]})
  record["key"] = legacy
  json.dump(record, open(first / "stage.json", "w"))
  first.rename(tmp_path / "shadow" / legacy)
  other = _tiny_pipeline(name="poison", epsilon=0.05, norm="linf", steps=2)
  other.steal.surrogate_size, other.steal.batch_size = 24, 8
  other.defense.shadow.batch_size = config.steal.batch_size
  out = pipeline.run(other, str(tmp_path))
  assert [d.name for d in (tmp_path / "shadow").iterdir()] == [legacy]
  assert out["stage_times"]["steal"] != "restored"  # A new attack, against the same shadow.
  assert "surrogate_size" not in shadow_lib.shadow_settings(other.steal, "d", "train", None,
                                                            0)["attack"]
  # Another shadow batch is another shadow, and so are its answers.
  other.defense.shadow.batch_size = 8
  pipeline.run(other, str(tmp_path))
  shadows = sorted(d.name for d in (tmp_path / "shadow").iterdir())
  assert len(shadows) == 2
  keys = {json.load(open(d / "stage.json"))["upstream"]["defense"].get("shadow")
          for d in (tmp_path / "query").iterdir()}
  assert keys == set(shadows) | {first.name}  # The first run's answers, under its own key.


def test_shadow_block_values_are_checked():
  for key, value in (("epochs", 0), ("batch_size", -2)):
    config = _tiny_pipeline(name="poison")
    config.defense.shadow[key] = value
    with pytest.raises(ConfigError, match=f"defense.shadow.{key}"):
      defenses.validate(config.defense)
