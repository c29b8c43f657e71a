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
