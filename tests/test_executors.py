"""Sweep executors: the same 6-cell sweep run here (local), as Ray tasks on a local cluster
of 2 workers, and as submitit jobs (its local executor standing in for SLURM) gives the
same table cell for cell, trains the shared target once and pays each query stage once."""

import glob
import json
import os

import pytest

from stolen_jax import executors, jobs
from stolen_jax.errors import ConfigError, UserError
from test_sweep import _paid, _sweep_config


def _config(executor):
  config = _sweep_config("steal.lambda_=1,5,20")
  config.sweep.seeds = (0, 1)
  config.sweep.executor, config.sweep.workers, config.sweep.slurm_cluster = executor, 2, "local"
  return config


def _cells(workdir):
  out = {}
  for path in glob.glob(f"{workdir}/sweep_cells/*.json"):
    record = json.load(open(path))
    out[os.path.basename(path)] = [(r["dataset"], r["ta"], r["sa"]) for r in record["rows"]]
  return out


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("local")
  jobs.run(_config("local"), str(workdir))
  return str(workdir)


@pytest.mark.slow  # 12 JAX processes on 2 cores: minutes (pytest -m slow tests/test_executors.py).
@pytest.mark.parametrize("executor", ["ray", "submitit"])
def test_an_engine_gives_the_local_table_cell_for_cell(executor, local_sweep, tmp_path):
  pytest.importorskip("ray" if executor == "ray" else "submitit")
  out = jobs.run(_config(executor), str(tmp_path))
  assert out["computed"] == 6
  assert _cells(tmp_path) == _cells(local_sweep)  # Same keys, same TA and SA.
  assert len(os.listdir(tmp_path / "pretrain")) == 1 and len(glob.glob(f"{tmp_path}/pretrain/*/summary.json")) == 1
  assert _paid(tmp_path) == _paid(local_sweep)  # One query stage per seed, paid once each.
  logs = glob.glob(f"{tmp_path}/sweep_logs/*.log")
  assert len(logs) == 6  # Each cell's output in its own log.
  # A rerun submits nothing: every cell has its record.
  assert jobs.run(_config(executor), str(tmp_path))["computed"] == 0


def test_failed_cells_are_reported_with_their_logs(tmp_path):
  pytest.importorskip("submitit")
  config = _config("submitit")
  config.sweep.axes = "steal.target=/nope1,/nope2"  # Each cell fails in its worker, at once.
  config.sweep.seeds = (0,)
  with pytest.raises(UserError, match=r"2 of 2 sweep cells failed \(steal.target=/nope\d, seed=0: "
                                      r".*sweep_logs/\w+\.log; steal.target=/nope\d"):
    jobs.run(config, str(tmp_path))
  logs = glob.glob(f"{tmp_path}/sweep_logs/*.log")
  assert len(logs) == 2 and any("'/nope1' does not exist" in open(p).read() for p in logs)
  assert not glob.glob(f"{tmp_path}/sweep_cells/*.json")


def test_resources_and_bad_executors_are_one_error():
  assert executors.parse_resources("num_gpus=1, slurm_partition=gpu") == {
      "num_gpus": 1, "slurm_partition": "gpu"}
  with pytest.raises(ConfigError, match="not KEY=VALUE"):
    executors.parse_resources("num_gpus")
  config = _config("dask")
  with pytest.raises(ConfigError, match="unknown sweep.executor 'dask'"):
    jobs.run(config, "/nonexistent/never/written")


@pytest.mark.slow  # A stacked program and 3 cells in one worker process: a minute or two.
def test_stacked_cells_train_as_one_program_inside_a_task(local_sweep, tmp_path):
  pytest.importorskip("submitit")
  config = _config("submitit")
  config.sweep.axes, config.sweep.seeds, config.sweep.stack_steals = "steal.lambda_=1,5,20", (0,), "on"
  out = jobs.run(config, str(tmp_path))
  assert out["computed"] == 3
  assert len(glob.glob(f"{tmp_path}/steal_stack/*")) == 1  # One stacked program for the three.
  assert len(glob.glob(f"{tmp_path}/sweep_logs/submitit/*_submitted.pkl")) == 1  # One task.
