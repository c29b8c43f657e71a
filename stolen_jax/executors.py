"""Who runs a sweep's cells (``sweep.executor``): this process, a Ray cluster, or SLURM.

The engine only schedules; the stages decide. Every cell is one pipeline run in the
sweep's workdir, and its stages are claimed with leases (``stolen_jax.leases``), so cells
that share a target, a shadow encoder, a query stage or a probe wait for one computation
of it and then restore it, whichever worker they run on. A cell's record
(``sweep_cells/<key>.json``) is written when it finishes: a rerun submits only the cells
that have none.

* ``local`` — the cells one after another in this process (the default; no extra).
* ``ray`` — each cell a Ray task (``pip install 'stolen_jax[ray]'``): on the cluster at
  ``sweep.ray_address`` (``ray start --head`` on one host, ``ray start --address=...`` on
  the others), or a local one started here with ``sweep.workers`` CPUs; per-task resources
  from ``sweep.resources`` (``num_gpus=1`` gives each cell one GPU of an 8-GPU host).
* ``submitit`` — each cell a SLURM job through submitit (``pip install 'stolen_jax[slurm]'``),
  its logs in ``<workdir>/sweep_logs``; ``sweep.resources`` are submitit's parameters
  (``slurm_partition=gpu,gpus_per_node=1,timeout_min=120``). ``sweep.slurm_cluster=local``
  runs the same jobs as local processes (submitit's LocalExecutor), as the tests do.

Progress of the whole sweep is printed in one place (cells done, running, failed; ETA). A
failed cell is reported with its log and does not stop the others; the sweep then stops
with one error naming every failed cell (the finished ones are kept for the rerun).
"""

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from typing import Callable

from stolen_jax import console
from stolen_jax.errors import ConfigError, UserError

EXECUTORS = ("local", "ray", "submitit")


def parse_resources(text: str) -> dict:
  """'num_gpus=1,num_cpus=2' -> {'num_gpus': 1, 'num_cpus': 2} (values read as JSON)."""
  out = {}
  for item in filter(None, (p.strip() for p in str(text or "").split(","))):
    if "=" not in item:
      raise ConfigError(f"sweep.resources: {item!r} is not KEY=VALUE")
    key, value = (s.strip() for s in item.split("=", 1))
    try:
      out[key] = json.loads(value)
    except ValueError:
      out[key] = value
  return out


@contextlib.contextmanager
def _output_to(path: str):
  """This process's stdout and stderr (file descriptors too: XLA and absl write there) go
  to ``path`` for the duration."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  with open(path, "a") as f:
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)
    try:
      yield
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)


def _stage_digests(stage_dirs: dict, workdir: str) -> dict:
  """{stage name: sha256 of its summary.json} for a record's stages (found under ``workdir``
  by their last two path parts, so a workdir read from another directory still matches);
  None for a stage whose summary is gone."""
  out = {}
  for name, stage_dir in (stage_dirs or {}).items():
    summary = os.path.join(workdir, *os.path.normpath(stage_dir).split(os.sep)[-2:],
                           "summary.json")
    try:
      with open(summary, "rb") as f:
        out[name] = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
      out[name] = None
  return out


def current_record(path: str, workdir: str):
  """The finished cell's record at ``path``, or None when there is none or when a stage it
  was made from has since been removed or recomputed (its figures would be stale)."""
  from stolen_jax import stages
  record = stages.read_json(path)
  if record is None:
    return None
  now = _stage_digests(record.get("context", {}).get("stages"), workdir)
  recorded = record.get("stage_digests", {})
  for name, digest in now.items():
    if digest is None or recorded.get(name, digest) != digest:
      logging.warning("sweep cell %s: its %s stage changed since it was recorded; recomputing",
                      os.path.basename(path), name)
      return None
  return record


def run_cell(cfg, workdir: str, overrides: dict, seed: int, path: str,
             log_path: str = "") -> dict:
  """One sweep cell: the pipeline in ``workdir`` (its stages shared through the workdir and
  claimed with leases), its record written atomically to ``path``. Returns the record.
  With ``log_path`` (a worker of Ray or SLURM), its output goes there."""
  from stolen_jax import pipeline, stages
  context = _output_to(log_path) if log_path else contextlib.nullcontext()
  with context:
    t0 = time.perf_counter()
    try:
      out = pipeline.run(cfg, workdir, print_table=False, write_report=False)
    except UserError as e:  # In the cell's log as the command line would say it.
      print(f"error: {e}", file=sys.stderr)
      raise
    except Exception:  # noqa: BLE001  (a bug: its traceback in the cell's log)
      traceback.print_exc()
      raise
    record = {"overrides": overrides, "seed": seed, "rows": out["rows"],
              "stage_times": out["stage_times"], "settings": out["settings"],
              "context": out["context"], "seconds": round(time.perf_counter() - t0, 1),
              **({"verification": out["verification"]} if "verification" in out else {})}
    record["stage_digests"] = _stage_digests(out["context"].get("stages"), workdir)
    stages.write_json_atomic(path, record, indent=2)
  return record


def run_group(items: list, workdir: str, stacked: bool = False) -> list:
  """A task of several cells: with ``stacked``, their steals first trained as one stacked
  program (``sweep.train_stacks``; the cells then find their steal stages finished), then
  each cell (``run_cell``). Returns their records, in order."""
  if stacked and len(items) > 1:
    from stolen_jax import sweep  # The sweep runs this module's tasks: imported when run.
    cfg, _, _, _, log = items[0]
    with (_output_to(log) if log else contextlib.nullcontext()):
      sweep.train_stacks(cfg, workdir, [item[0] for item in items])
  return [run_cell(cfg, workdir, ov, seed, path, log) for cfg, ov, seed, path, log in items]


def _progress(done: int, running: int, failed: int, total: int, t_start: float, computed: int):
  from stolen_jax.metrics import format_seconds
  left = total - done - failed
  eta = (format_seconds((time.perf_counter() - t_start) / computed * left / max(running, 1))
         if computed and left else "0s")
  console.stage_line("sweep", f"{done}/{total} cells done, {running} running, {failed} failed; "
                     f"ETA {eta}")


def _ray_tasks(config, workdir: str, todo: list, resources: dict):
  import ray  # An extra: pip install 'stolen_jax[ray]'.
  address = config.sweep.get("ray_address") or None
  if not ray.is_initialized():
    ray.init(address=address, num_cpus=None if address else int(config.sweep.get("workers") or 2),
             include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
  task = ray.remote(**{"num_cpus": 1, **resources})(run_group)
  pending = {task.remote([item for _, item in group], workdir, stacked): tuple(i for i, _ in group)
             for group, stacked in todo}

  def wait():
    ready, _ = ray.wait(list(pending), num_returns=1)
    ref = ready[0]
    i = pending.pop(ref)
    try:
      return i, ray.get(ref), None
    except Exception as e:  # noqa: BLE001  (the cell's failure, reported with its log)
      return i, None, e
  return pending, wait


def _submitit_tasks(config, workdir: str, todo: list, resources: dict):
  import submitit  # An extra: pip install 'stolen_jax[slurm]'.
  folder = os.path.join(workdir, "sweep_logs", "submitit")
  if config.sweep.get("slurm_cluster") == "local":
    executor = submitit.LocalExecutor(folder=folder)
  else:
    executor = submitit.AutoExecutor(folder=folder, cluster=config.sweep.get("slurm_cluster")
                                     or None)
  # submitit's default time limit (minutes) is shorter than a real cell: a day unless given.
  executor.update_parameters(**{"timeout_min": 24 * 60, **resources})
  # One SLURM job array for all the tasks (submitit's map_array).
  jobs = executor.map_array(run_group, [[item for _, item in group] for group, _ in todo],
                            [workdir] * len(todo), [stacked for _, stacked in todo])
  pending = dict(zip(jobs, [tuple(i for i, _ in group) for group, _ in todo]))

  def wait():
    while True:
      for job, i in list(pending.items()):
        if job.done():
          del pending[job]
          try:
            return i, job.result(), None
          except Exception as e:  # noqa: BLE001
            return i, None, e
      time.sleep(0.5)
  return pending, wait


def run_remote(config, workdir: str, todo: list, label: Callable[[int], str]) -> dict:
  """Runs ``todo`` = [(group, stacked)] on the configured engine, a task per group, where a
  group is [(index, (cfg, overrides, seed, record path, log path))] (one cell, or cells
  whose steals train as one stacked program when ``stacked``); returns {index: record}.
  Failed cells are reported as they fail and raised together at the end."""
  name = config.sweep.get("executor", "local")
  if name not in EXECUTORS:
    raise ConfigError(f"unknown sweep.executor {name!r}; valid choices: {', '.join(EXECUTORS)}")
  if config.get("multihost"):
    raise ConfigError(f"sweep.executor={name} runs each cell as its own job: use it without "
                      "multihost (each task is one host's job)")
  resources = parse_resources(config.sweep.get("resources", ""))
  if not todo:  # Every cell has its record: nothing to submit (no engine started).
    return {}
  try:
    start = _ray_tasks if name == "ray" else _submitit_tasks
    pending, wait = start(config, workdir, todo, resources)
  except ImportError:
    extra = "ray" if name == "ray" else "slurm"
    raise ConfigError(f"sweep.executor={name} needs the extra: pip install "
                      f"'stolen_jax[{extra}]'") from None
  logs = {i: item[4] for group, _ in todo for i, item in group}
  total, records, failed, t_start = len(logs), {}, [], time.perf_counter()
  _progress(0, total, 0, total, t_start, 0)
  while pending:
    cells, result, error = wait()
    if error is None:
      records.update(zip(cells, result))
    else:
      failed += cells
      for i in cells:
        console.stage_line("sweep", f"FAILED {label(i)}: {type(error).__name__}; log: {logs[i]}")
    running = total - len(records) - len(failed)
    _progress(len(records), running, len(failed), total, t_start, len(records))
  if failed:
    raise UserError(f"{len(failed)} of {total} sweep cells failed ("
                    + "; ".join(f"{label(i)}: {logs[i]}" for i in failed)
                    + "); the others are kept: a rerun computes only what is missing")
  return records
