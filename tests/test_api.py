"""The library face: stolen_jax.pretrain/steal/probe/sweep build the command line's configs
and run the same jobs, so a call and the command line with the same settings share stages."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import stolen_jax as sj
from stolen_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "configs", "tiny_pipeline.py")


@pytest.fixture(scope="module")
def stolen(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("api"))
  target = sj.pretrain(base=TINY, workdir=workdir)
  return workdir, target, sj.steal(target.encoder, "embedded:textures", budget=32, base=TINY,
                                   workdir=workdir)


def test_steal_returns_the_encoder_and_a_rerun_pays_nothing(stolen):
  workdir, target, r = stolen
  assert isinstance(r, sj.StealResult) and r.queries == 32 and r.queries_paid == 32
  assert "| attack |" in r.table and r.rows[0]["queries"] == 32
  images = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
  assert r.encoder(images).shape == (5, r.encoder.meta["feature_dim"])
  again = sj.steal(target.encoder.path, "embedded:textures", budget=32, base=TINY,
                   workdir=workdir)
  assert again.queries_paid == 0 and again.stage_dir == r.stage_dir
  with pytest.raises(dataclasses.FrozenInstanceError):
    r.queries = 0  # Results are frozen.


def test_the_command_line_with_the_same_settings_reads_the_same_stage(stolen):
  workdir, target, r = stolen
  out = subprocess.run(
      [sys.executable, "-m", "stolen_jax.main", f"--config={TINY}", f"--workdir={workdir}",
       "--config.job=steal", f"--config.steal.target={target.stage_dir}",
       "--config.steal.query_budget=32", "--config.steal.surrogate_size=32"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "restored, nothing paid now" in out.stdout and r.stage_dir in out.stdout


def test_probe_and_save(stolen, tmp_path):
  workdir, _, r = stolen
  p = sj.probe(r.encoder, "embedded:glyphs", base=TINY, workdir=workdir)
  assert p.rows[0]["dataset"] == "embedded:glyphs" and 0 <= p.rows[0]["accuracy (%)"] <= 100
  saved = r.encoder.save(str(tmp_path / "saved"))
  images = np.random.default_rng(1).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
  np.testing.assert_array_equal(sj.open_target(saved)(images), r.encoder(images))


def test_a_misspelt_setting_is_one_error_naming_the_nearest(stolen):
  workdir, target, _ = stolen
  with pytest.raises(ConfigError, match=r"unknown setting 'steal.epochz'.*did you mean "
                                        r"'steal.epochs'"):
    sj.steal(target.encoder, "embedded:textures", budget=32, base=TINY, workdir=workdir,
             epochz=3)
  with pytest.raises(ConfigError, match="'probe.epoch'.*did you mean 'probe.epochs'"):
    sj.probe(target.encoder, "embedded:glyphs", base=TINY, workdir=workdir,
             **{"probe.epoch": 3})
  with pytest.raises(ConfigError, match="an encoder takes uint8 images"):
    target.encoder(np.zeros((2, 16, 16, 3), np.float32))


def test_an_ambiguous_stage_root_lists_what_tells_its_stages_apart(stolen):
  workdir, target, _ = stolen
  sj.steal(target.encoder, "embedded:textures", budget=32, base=TINY, workdir=workdir,
           lambda_=5.0)
  with pytest.raises(Exception, match=r"holds 2 stages with other settings: \w+ \(.*lambda_=20"
                                      r".*\); \w+ \(.*lambda_=5.*name one"):
    sj.probe(os.path.join(workdir, "steal"), "embedded:glyphs", base=TINY, workdir=workdir)
