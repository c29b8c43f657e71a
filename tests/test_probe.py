import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_pretrain_block, tiny_steal_config
from stolen_jax import defaults, features, models, pipeline, probe
from stolen_jax.errors import CheckpointError


def tiny_probe_block(**overrides):
  q = defaults.probe_block()
  q.datasets = "embedded:glyphs"
  q.num_train, q.num_test = 64, 32
  q.image_size = 16
  q.hidden = (32, 16)
  q.epochs, q.batch_size = 3, 32
  q.checkpoint_every_epochs = 10
  for k, v in overrides.items():
    q[k] = v
  return q


def test_probe_learns_separable_data(mesh8, tmp_path):
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(4, 16)) * 3
  y = rng.integers(0, 4, 512)
  x = (centers[y] + rng.normal(size=(512, 16))).astype(np.float32)
  cfg = tiny_probe_block(epochs=20, lr=3e-3, batch_size=64)
  out = probe.train_classifier(x[:384], y[:384], x[384:], y[384:], 4, cfg, str(tmp_path), mesh8, 0)
  assert out["accuracy"] > 0.95 and out["predictions"].shape == (128,)


def test_sharded_feature_extraction_equals_unsharded(mesh1, mesh8):
  enc = models.get("resnet10", width=0.0625)
  images = np.random.default_rng(0).integers(0, 255, (21, 16, 16, 3), dtype=np.uint8)
  variables = jax.jit(enc.init)(jax.random.PRNGKey(0), images[:1].astype(np.float32))
  fn = features.make_feature_fn(enc)
  a = features.extract(fn, variables, images, mesh1, batch_size=8)
  b = features.extract(fn, variables, images, mesh8, batch_size=16)
  assert a.shape == (21, enc.feature_dim)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  config = defaults.base_config("probe")
  config.probe = tiny_probe_block(encoder=str(tmp_path / "nope"))
  with pytest.raises(CheckpointError, match="does not exist"):
    probe.run(config, str(tmp_path / "out"))
  os.makedirs(tmp_path / "empty")
  config.probe.encoder = str(tmp_path / "empty")
  with pytest.raises(CheckpointError, match="no Orbax checkpoint"):
    probe.run(config, str(tmp_path / "out"))


def test_probe_job_on_a_checkpoint(tiny_target, tmp_path):
  config = defaults.base_config("probe")
  config.probe = tiny_probe_block(encoder=tiny_target)
  summary = probe.run(config, str(tmp_path))
  assert summary["results"][0]["dataset"] == "embedded:glyphs"
  assert 0 <= summary["results"][0]["accuracy"] <= 1


def _query_log_total(path):
  import glob
  return sum(json.loads(l)["count"] for p in glob.glob(str(path)) for l in open(p))


def test_pipeline_writes_table_and_rerun_skips_every_stage(tmp_path, capsys):
  config = tiny_steal_config(None, epochs=1)
  config.job = "pipeline"
  config.pretrain = tiny_pretrain_block(epochs=1)
  config.probe = tiny_probe_block()
  out = pipeline.run(config, str(tmp_path))
  assert config.steal.target is None  # The caller's config is not mutated.
  row = out["rows"][0]
  assert row["queries"] == 32 and 0 <= row["ta"] <= 1 and 0 <= row["sa"] <= 1
  md = open(tmp_path / "results.md").read()
  for column in ("TA (%)", "SA (%)", "SA/TA (%)", "#Queries", "Cost ($)", "cos(f_t, f_s)",
                 "Agreement (%)"):
    assert column in md
  header = open(tmp_path / "results.csv").readline()
  assert header.startswith("dataset,ta,sa,sa_over_ta,queries,cost,cosine,agreement")
  assert "normalize_features=True" in md
  assert "](results.png)" in md and (tmp_path / "results.png").stat().st_size > 1000
  paid = _query_log_total(tmp_path / "query" / "*" / "queries.jsonl")
  customer = _query_log_total(tmp_path / "probe" / "target_api_queries.jsonl")
  assert paid == 32 and customer == 64 + 32  # Probe train + test images via the API.

  again = pipeline.run(config, str(tmp_path))
  assert again["stage_times"]["target"] == "restored" and again["stage_times"]["steal"] == "restored"
  assert _query_log_total(tmp_path / "query" / "*" / "queries.jsonl") == paid
  assert _query_log_total(tmp_path / "probe" / "target_api_queries.jsonl") == customer
  assert again["rows"][0]["ta"] == row["ta"] and again["rows"][0]["sa"] == row["sa"]


def test_pipeline_rerun_with_new_attack_settings_recomputes_only_the_steal(tmp_path):
  config = tiny_steal_config(None, epochs=1)
  config.job = "pipeline"
  config.pretrain = tiny_pretrain_block(epochs=1)
  config.probe = tiny_probe_block()
  first = pipeline.run(config, str(tmp_path))
  customer = _query_log_total(tmp_path / "probe" / "target_api_queries.jsonl")
  config.steal.lambda_ = 0.0
  second = pipeline.run(config, str(tmp_path))
  times = second["stage_times"]
  assert times["target"] == "restored" and times["steal"] != "restored"
  assert second["settings"]["lambda"] == 0.0 and first["settings"]["lambda"] == 20.0
  md = open(tmp_path / "results.md").read()
  assert "lambda=0.0" in md and "Target: method=simclr" in md and "Probe: hidden=[32, 16]" in md
  assert _query_log_total(tmp_path / "query" / "*" / "queries.jsonl") == 32  # Answers reused.
  assert _query_log_total(tmp_path / "probe" / "target_api_queries.jsonl") == customer


def test_probe_job_restores_the_encoders_own_image_size(tiny_target, tmp_path, capsys):
  config = defaults.base_config("probe")
  config.probe = tiny_probe_block(encoder=tiny_target)
  config.probe.image_size = None  # As configs/probe.py: the encoder's record decides (16 px).
  summary = probe.run(config, str(tmp_path))
  assert summary["probe"]["image_size"] == 16
  out = capsys.readouterr().out
  assert "probe: 16-px images" in out and "test accuracy" in out and "fingerprint" in out
