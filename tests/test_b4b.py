"""B4B as published: its coverage and noise beside a direct transcription of the paper's
formula, per-account transformations that are stable across restarts, and the HTTP server's
per-key secrets in the ledger."""

import json
import math
import os

import numpy as np
import pytest

from stolen_jax.defenses.b4b import B4B, B4BConfig, Transformation, noise_std


def _transcribed_coverage(planes, answers) -> float:
  """Their coverage, written out: for each projection, the set of sign patterns (buckets)
  the answers fall in, as a percentage of 2^bits; the mean over projections."""
  percents = []
  for p in range(planes.shape[0]):
    seen = set()
    for a in answers:
      bits = tuple(bool(sum(a[d] * planes[p, d, b] for d in range(len(a))) > 0)
                   for b in range(planes.shape[2]))
      seen.add(bits)
    percents.append(100.0 * len(seen) / 2 ** planes.shape[2])
  return sum(percents) / len(percents)


def _transcribed_std(coverage, alpha=0.8, beta=80.0, lam=1e-6) -> float:
  return max(lam * (math.exp(math.log(alpha / lam) * coverage / beta) - 1), 0)


def test_the_penalty_agrees_with_the_published_formula():
  rng = np.random.default_rng(0)
  tracker = B4B(8, B4BConfig(projections=5, bits=6, transform="none"))
  answers = rng.normal(size=(300, 8)).astype(np.float32)
  images = rng.integers(0, 255, (300, 4, 4, 3), dtype=np.uint8)
  out = tracker("attacker", answers, images)
  coverage = tracker.coverage("attacker")
  assert coverage == pytest.approx(_transcribed_coverage(tracker.planes, answers))
  assert noise_std(coverage, 0.8, 80.0, 1e-6) == pytest.approx(_transcribed_std(coverage))
  # The answers carry exactly that noise: their deviation's std is σ (over 2,400 draws).
  assert np.std(out - answers) == pytest.approx(_transcribed_std(coverage), rel=0.05)
  # At the published calibration: no noise at 0%, α − λ at β percent.
  assert noise_std(0.0, 0.8, 80.0, 1e-6) == 0 and noise_std(80.0, 0.8, 80.0, 1e-6) == pytest.approx(0.8 - 1e-6)


def test_noise_grows_with_coverage_and_stays_small_for_a_narrow_customer():
  rng = np.random.default_rng(0)
  b4b = B4B(16, B4BConfig(projections=4, bits=8, alpha=0.5, beta=20.0, transform="none"))
  center = rng.normal(size=16).astype(np.float32) * 5
  narrow = center + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)  # One task's region.
  broad = rng.normal(size=(200, 16)).astype(np.float32) * 5  # A surrogate set covering the space.
  imgs = lambda n, s: np.random.default_rng(s).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)
  errors = {"narrow": [], "broad": []}
  for chunk in range(4):
    for name, feats in (("narrow", narrow), ("broad", broad)):
      part = feats[chunk * 50:(chunk + 1) * 50]
      out = b4b(name, part, imgs(50, chunk * 10 + len(name)))
      errors[name].append(float(np.mean(np.linalg.norm(out - part, axis=1))))
  assert b4b.coverage("broad") > 10 * b4b.coverage("narrow")
  assert errors["broad"][-1] > errors["broad"][0]  # Grows with coverage.
  assert errors["narrow"][-1] < 0.01 < errors["broad"][-1]


@pytest.mark.parametrize("kind", ["affine", "shuffle_pad", "affine_shuffle_pad", "binary"])
def test_transformations_are_per_account_and_stable_across_restarts(kind):
  rng = np.random.default_rng(1)
  answers = rng.normal(size=(40, 12)).astype(np.float32)
  images = rng.integers(0, 255, (40, 4, 4, 3), dtype=np.uint8)
  # Noise of at most 1e-5 (α): the map alone is under test.
  cfg = B4BConfig(projections=2, bits=4, alpha=1e-5, transform=kind, seed=3)
  first, restarted = B4B(12, cfg), B4B(12, cfg)
  a = first("alice", answers, images)
  assert a.shape == (40, first.out_dim)
  np.testing.assert_array_equal(a, restarted("alice", answers, images))  # Same account, same map.
  b = first("bob", answers, images)
  assert not np.allclose(a, b)  # Another account, another space.
  if kind == "binary":
    assert set(np.unique(a)) <= {0.0, 1.0}
  else:
    # An invertible map: a linear read-out of one account's answers recovers the features
    # (its downstream tasks are unaffected), the other account's map is not the same one.
    design = np.concatenate([a, np.ones((40, 1), np.float32)], 1)
    fit, *_ = np.linalg.lstsq(design, answers, rcond=None)
    np.testing.assert_allclose(design @ fit, answers, atol=1e-3)


def test_a_transformation_is_the_published_kind():
  t = Transformation("affine_shuffle_pad", 6, b"secret", pad_ratio=1.0)
  x = np.arange(12, dtype=np.float32).reshape(2, 6)
  y = t(x)
  assert y.shape == (2, 12)
  unshuffled = np.empty_like(y)
  unshuffled[:, t.order] = y
  np.testing.assert_allclose(unshuffled[:, :6], x * t.scale + t.shift, rtol=1e-6)
  np.testing.assert_array_equal(unshuffled[:, 6:], np.broadcast_to(t.padding, (2, 6)))
  assert np.all(np.abs(t.scale) <= 1) and np.all(np.abs(t.shift) <= 1)


def test_the_ledger_keeps_each_keys_secret(tmp_path):
  from stolen_jax.eaas.ledger import Ledger
  path = str(tmp_path / "ledger.sqlite")
  ledger = Ledger(path)
  s1, s2 = ledger.secret("k1"), ledger.secret("k2")
  assert len(s1) == 32 and s1 != s2 and ledger.secret("k1") == s1
  ledger.close()
  assert Ledger(path).secret("k1") == s1  # Across restarts: the same space for the same key.


def test_a_two_account_sybil_steal_pays_the_sum_of_both_bills(tiny_target, tmp_path):
  """Two accounts of a B4B API (affine per-account maps): each pays its share (account 1
  also the mapping images), the steal's queries are the sum, the answers carried into
  account 0's space agree with account 0's own map, and a rerun pays nothing."""
  from conftest import tiny_steal_config
  from stolen_jax import steal
  config = tiny_steal_config(tiny_target, surrogate_size=96, sybils=2, sybil_mapping=40)
  config.defense.name = "b4b"
  config.defense.b4b.transform, config.defense.b4b.alpha = "affine", 1e-5  # Map only.
  first = steal.run(config, str(tmp_path))
  bills = {a["account"]: a["queries"] for a in first["sybils"]["accounts"]}
  assert bills == {"sybil0": 48, "sybil1": 40 + 48}
  assert first["queries"] == sum(bills.values()) == 136
  logs = [json.loads(line) for k in (0, 1) for line in
          open(os.path.join(first["query_stage"], f"queries_sybil{k}.jsonl"))]
  assert sum(r.get("count", 0) for r in logs if r.get("paid", True)) >= 136
  assert first["sybils"]["mapping_relative_error"][0] < 0.01  # The affine maps undone.
  again = steal.run(config, str(tmp_path))
  assert again["restored"] and again["queries"] == 136
  single = tiny_steal_config(tiny_target, surrogate_size=96)
  assert "sybils" not in steal.steal_settings(single)  # Single-account keys unchanged.


@pytest.mark.slow  # 25 s: the in-process sybil steal is in the default run.
def test_sybils_through_http_use_real_keys_and_pay_each_bill(tiny_target, tmp_path):
  """Two keys of our HTTP API with B4B on: each key pays its share on the server's ledger,
  the steal's queries and $ are the sum of both bills, and its stage key holds no key."""
  from conftest import tiny_steal_config
  from test_serve import ThreadServer
  from stolen_jax import defaults, parallel, steal
  from stolen_jax.defenses import b4b as b4b_lib
  from stolen_jax.eaas import ledger as ledger_lib, server
  target = steal.open_target(tiny_target, parallel.make_mesh())
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  block = defaults.b4b_block(enabled=True, seed=0)
  block.transform, block.alpha = "affine", 1e-5
  tracker = b4b_lib.B4B(target.meta["feature_dim"], b4b_lib.config_of(block, 0),
                        secret_of=ledger.secret)
  app = server.make_app(target.features_fn, ledger, image_size=16,
                        feature_dim=target.meta["feature_dim"], b4b=tracker,
                        model_info={"fingerprint": target.meta["fingerprint"],
                                    "defense": {"name": "none"}}, batch_window_ms=0)
  keys = [ledger.add_key(f"sybil{k}", budget=200, price_per_1000=1.2) for k in range(2)]
  with ThreadServer(app) as url:
    out = steal.run(tiny_steal_config(url, surrogate_size=96, sybils=2, sybil_mapping=40,
                                      api_keys=",".join(keys)), str(tmp_path / "w"))
  assert [ledger.authenticate(k).used for k in keys] == [48, 88]
  assert out["queries"] == out["api_used"] == 136
  assert out["api_cost"] == pytest.approx(136 * 1.2 / 1000)
  assert out["sybils"]["mapping_relative_error"][0] < 0.01
  assert not any(k in open(os.path.join(out["stage_dir"], "stage.json")).read() for k in keys)


def _synthetic(n: int, seed: int) -> np.ndarray:
  """Features of a synthetic ReLU encoder (rank-6 latent structure, 32 dimensions)."""
  r = np.random.default_rng(seed)
  return (np.maximum(r.normal(size=(n, 6)) @ r.normal(size=(6, 32)), 0) * 0.3).astype(np.float32)


def _coverage(answers, images) -> float:
  tracker = B4B(answers.shape[1], B4BConfig(projections=4, bits=6, transform="none"))
  tracker("a", answers, images)
  return tracker.coverage("a")


def test_recovery_recognises_each_perturbation_on_a_synthetic_target():
  import jax.numpy as jnp
  from stolen_jax.defenses.rounding import round_features
  from stolen_jax.defenses.topk import topk
  from stolen_jax.steal import recover
  clean, shadow = _synthetic(800, 1), _synthetic(800, 2)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (800, 4, 4, 3), dtype=np.uint8)
  noisy = clean + 0.3 * rng.normal(size=clean.shape).astype(np.float32)
  cases = {
      "none": (clean, "none"), "noise": (noisy, "noise"),
      "topk": (np.asarray(topk(jnp.asarray(clean), 8)), "topk"),
      "round": (np.asarray(round_features(jnp.asarray(clean), 1)), "round"),
      "b4b_binary": (B4B(32, B4BConfig(transform="binary"))("a", clean, images), "b4b_binary"),
  }
  # B4B whose noise reaches α = 0.3 at the coverage these 800 answers reach.
  coverage = _coverage(clean, images)
  cases["b4b_pad"] = (B4B(32, B4BConfig(projections=4, bits=6, alpha=0.3, beta=coverage,
                                        transform="shuffle_pad"))("a", clean, images), "b4b_pad")
  for name, (answers, kind) in cases.items():
    assert recover.detect(answers, shadow)["kind"] == kind, name
  padded = recover.detect(cases["b4b_pad"][0], shadow)
  assert len(padded["padding"]) == 32 and padded["then"]["kind"] == "noise"  # B4B's noise too.
  assert recover.detect(cases["topk"][0], shadow)["k"] == 8
  assert recover.detect(cases["round"][0], shadow)["decimals"] == 1
  cos = lambda a, b: float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) /
                                   np.linalg.norm(b, axis=1)))
  restored = recover.recover(noisy, recover.detect(noisy, shadow))
  assert cos(restored, clean) > cos(noisy, clean) + 0.05  # The Wiener filter helps.
  np.testing.assert_array_equal(recover.recover(clean, {"kind": "none"}), clean)


@pytest.mark.slow  # 20 s (a shadow pre-trained, then the steal); recognition is tested above.
def test_a_recovering_steal_records_what_it_recognised(tiny_target, tmp_path):
  from conftest import tiny_steal_config
  from stolen_jax import steal
  config = tiny_steal_config(tiny_target, recover="auto")
  config.defense.name, config.defense.decimals = "round", 2
  out = steal.run(config, str(tmp_path))
  assert out["recover"]["kind"] == "round" and out["recover"]["decimals"] == 2
  assert out["queries"] == 32  # The shadow costs no query.
  assert len(list((tmp_path / "steal").iterdir())) == 2  # The steal and the attacker's shadow.


def test_feature_cosines_of_different_spaces_are_not_reported():
  """A recovering steal drops B4B's padding: its features have the target's dimension while
  a customer's answers stay padded; no per-image cosine compares the two."""
  from stolen_jax import probe
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 20)
  padded = {"test_features": rng.normal(size=(20, 16)), "predictions": labels}
  dropped = {"test_features": rng.normal(size=(20, 8)), "predictions": labels}
  out = probe.fidelity(padded, dropped)
  assert out["cosine_similarity"] is None and out["agreement"] == 1.0
  assert probe.fidelity(padded, padded)["cosine_similarity"] == pytest.approx(1.0)


@pytest.mark.slow  # ~1 min: a tiny target, the attacker's shadow, the steal and the probes.
def test_a_pipeline_recovers_from_b4b_and_reports_its_row(tmp_path):
  from test_defend import _tiny_pipeline
  from stolen_jax import pipeline
  config = _tiny_pipeline(name="b4b")
  config.steal.recover, config.steal.eval_heldout = "auto", 16
  out = pipeline.run(config, str(tmp_path))
  row = out["rows"][0]
  assert row["cosine"] is None and row["sa"] is not None and row["ta_undefended"] is not None
  # Padding dropped, the space is still the account's own: compared through a fitted map.
  steals = [json.load(open(p)) for p in tmp_path.glob("steal/*/summary.json")]
  recovered = [s for s in steals if s.get("recover")]
  assert len(recovered) == 1 and recovered[0]["recover"]["kind"] == "b4b_pad"
  assert "affine map" in recovered[0]["heldout"]["mapped"]
