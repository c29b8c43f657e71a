"""Sweeps: cells share stages, resume, and a new axis value computes only its cell."""

import glob
import json
import os

import pytest

from conftest import tiny_pretrain_block, tiny_steal_config
from stolen_jax import jobs, sweep
from stolen_jax.errors import ConfigError


def _sweep_config(axes="steal.lambda_=0,20"):
  from test_probe import tiny_probe_block
  config = tiny_steal_config(None, epochs=1)
  config.job = "sweep"
  config.pretrain = tiny_pretrain_block(epochs=1)
  config.probe = tiny_probe_block(epochs=2)
  config.sweep = sweep.sweep_block()
  config.sweep.axes = axes
  return config


def _paid(workdir):
  return sum(json.loads(l)["count"] for p in glob.glob(f"{workdir}/query/*/queries.jsonl")
             for l in open(p))


def test_axes_parse_typed_and_bad_axes_fail():
  config = _sweep_config("steal.lambda_=0,1,5; steal.distance=l2,cosine")
  cells = sweep.cells(config)
  assert len(cells) == 6 and cells[0] == {"steal.lambda_": 0.0, "steal.distance": "l2"}
  config.sweep.mode = "zip"
  with pytest.raises(ConfigError, match="one length"):
    sweep.cells(config)
  with pytest.raises(ConfigError, match="no key 'lambda'"):
    sweep.cells(_sweep_config("steal.lambda=0,1"))
  with pytest.raises(ConfigError, match="unknown steal.distance 'l7'"):
    jobs.validate(_sweep_config("steal.distance=l2,l7"))


def test_lambda_sweep_shares_target_resumes_and_extends_by_one_cell(tmp_path, monkeypatch):
  from stolen_jax import pipeline
  workdir = str(tmp_path)
  real = pipeline.run
  calls = []

  def killed_in_second_cell(*a, **k):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt  # Killed while the second cell runs.
    return real(*a, **k)
  monkeypatch.setattr(pipeline, "run", killed_in_second_cell)
  with pytest.raises(KeyboardInterrupt):
    jobs.run(_sweep_config(), workdir)
  monkeypatch.setattr(pipeline, "run", real)
  out = jobs.run(_sweep_config(), workdir)
  assert out["computed"] == 1 and len(out["rows"]) == 2  # Only the cell it was in.
  assert len(os.listdir(tmp_path / "pretrain")) == 1  # One target for both cells.
  assert _paid(workdir) == 32  # |D| in total: the second cell reuses the answers.
  md = open(tmp_path / "results.md").read()
  assert "steal.lambda_" in md and os.path.exists(tmp_path / "results.png")

  again = jobs.run(_sweep_config("steal.lambda_=0,20,5"), workdir)
  assert again["computed"] == 1 and len(again["rows"]) == 3
  assert _paid(workdir) == 32
  assert len(os.listdir(tmp_path / "steal")) == 3


def test_seeds_share_the_target_and_report_mean_and_std(tmp_path):
  config = _sweep_config("steal.lambda_=20")
  config.sweep.seeds = (0, 1)
  out = jobs.run(config, str(tmp_path))
  assert len(os.listdir(tmp_path / "pretrain")) == 1
  assert out["rows"][0]["seeds"] == 2
  assert "±" in open(tmp_path / "results.md").read()


def test_a_cell_whose_stage_was_removed_or_recomputed_is_not_read_back(tmp_path):
  """A cell's record names the steal stage it was made from: with that stage removed, or its
  summary rewritten by a recomputation, the record's figures would be stale — it reruns."""
  import shutil
  config = _sweep_config("steal.lambda_=20")
  assert jobs.run(config, str(tmp_path))["computed"] == 1
  assert jobs.run(config, str(tmp_path))["computed"] == 0  # Read back.
  (stage,) = (tmp_path / "steal").iterdir()
  summary = stage / "summary.json"
  summary.write_text(summary.read_text().replace("{", '{"recomputed": true, ', 1))
  assert jobs.run(config, str(tmp_path))["computed"] == 1
  shutil.rmtree(stage)
  assert jobs.run(config, str(tmp_path))["computed"] == 1
  assert (tmp_path / "steal" / stage.name / "summary.json").exists()


def test_stacked_steals_write_the_stages_single_runs_would(tmp_path):
  # Cells that differ in λ and d train as one stacked program (here 2, and 1 alone: max_stack
  # 2); each writes the steal stage a single run writes: same key, same encoder.
  import numpy as np
  from stolen_jax import features, parallel, steal
  config = _sweep_config("steal.lambda_=5,20,30; steal.distance=l2,cosine,l2")
  config.sweep.mode, config.sweep.stack_steals, config.sweep.max_stack = "zip", "on", 2
  out = jobs.run(config, str(tmp_path / "sweep"))
  assert len(out["rows"]) == 3 and len(os.listdir(tmp_path / "sweep" / "steal_stack")) == 1
  (target,) = glob.glob(str(tmp_path / "sweep" / "pretrain" / "*"))
  mesh = parallel.make_mesh()
  images = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
  stacked_with = []
  for overrides in sweep.cells(config):
    cfg = sweep.cell_config(config, overrides, 0)
    cfg.steal.target = target
    s = steal.run(cfg, str(tmp_path / "sweep"), mesh)  # Restored: the stack wrote it.
    single = steal.run(cfg, str(tmp_path / "single"), mesh)  # Trained alone.
    assert s["restored"] and not single.get("restored")
    assert s["stage_key"] == single["stage_key"]
    stacked_with.append(s.get("stacked_with", 1))
    np.testing.assert_allclose(s["final_loss"], single["final_loss"], rtol=1e-3)
    a, _ = features.restore_features_fn(s["stage_dir"], mesh)
    b, _ = features.restore_features_fn(single["stage_dir"], mesh)
    np.testing.assert_allclose(a(images), b(images), rtol=1e-3, atol=1e-4)
  assert stacked_with == [2, 2, 1]


def test_claims_weigh_the_effect_against_the_seeds_spread():
  from stolen_jax import claims
  table = [
      {"cell": "l2", "dataset": "d", "sa": 0.80, "sa_std": 0.01, "seeds": 3},
      {"cell": "cosine", "dataset": "d", "sa": 0.70, "sa_std": 0.01, "seeds": 3},
      {"cell": "l1", "dataset": "d", "sa": 0.795, "sa_std": 0.03, "seeds": 3},
      {"cell": "one", "dataset": "d", "sa": 0.9, "sa_std": None, "seeds": 1}]
  rows = claims.evaluate("l2 > cosine; cosine > l2; l2 > l1; l2 ~ l1; l2 ~ cosine; one > l2", table)
  got = {r["claim"]: r["verdict"] for r in rows}
  assert got == {"l2 > cosine": "holds", "cosine > l2": "does not hold",
                 "l2 > l1": "not resolved", "l2 ~ l1": "not resolved",
                 "l2 ~ cosine": "does not hold", "one > l2": "not resolved (1 seed)"}
  assert rows[0]["diff"] == pytest.approx(10.0)
  assert "| l2 > cosine | d | +10.00 |" in claims.markdown(rows)
  with pytest.raises(ConfigError, match="not in the table"):
    claims.evaluate("l2 > nope", table)
  with pytest.raises(ConfigError, match="bad sweep.claims"):
    claims.parse("l2 cosine")
  # SA/TA: cells with different targets compare what the attack keeps of each.
  targets = [{"cell": "moco", "dataset": "d", "sa": 0.60, "sa_std": 0.01, "sa_over_ta": 0.99,
              "sa_over_ta_std": 0.002, "seeds": 2},
             {"cell": "npz:/x", "dataset": "d", "sa": 0.80, "sa_std": 0.01, "sa_over_ta": 1.0,
              "sa_over_ta_std": 0.002, "seeds": 2}]
  (row,) = claims.evaluate("SA/TA: moco ~ npz:/x", targets)
  assert row["claim"] == "SA/TA: moco ~ npz:/x" and row["diff"] == pytest.approx(-1.0)
  assert row["verdict"] == "holds"
  assert claims.evaluate("moco ~ npz:/x", targets)[0]["verdict"] == "does not hold"
