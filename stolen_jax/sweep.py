"""``job='sweep'``: a grid of pipeline cells in one workdir, one table (and plot) per experiment.

``sweep.axes`` names the settings to vary, e.g. ``"steal.lambda_=0,1,5,10,20,30"`` or
``"steal.distance=l2,l1,cosine; steal.normalize_features=true,false"`` (``;`` separates
axes, ``,`` — or ``|`` when values hold commas — separates values; ``sweep.mode`` =
``product`` or ``zip``). Each cell is a pipeline run in the sweep's own
workdir, so cells share every stage whose key they share — one target, one query stage per
surrogate set and defense, one target probe per downstream set and defense — and a cell
whose stages are all finished costs nothing. ``sweep.seeds`` repeats each cell over seeds of
the attack and the probes (the surrogate draw, the stolen encoder's init, the probes), the
target shared; the table shows mean ± std.

``sweep.stack_steals`` (``auto``: on GPU/TPU only) trains the steals of cells that differ
only in λ (> 0) and the distance d as one stacked program (``steal.run_stack``, at most
``sweep.max_stack`` cells each): one data pipeline and one program fill an accelerator that a
batch-64 step leaves idle. The stages it writes are the ones single runs would write. On
XLA:CPU stacking was measured slower than separate runs (bench/RESULTS.md), hence ``auto``.

Outputs: ``results.{md,csv,json}`` (one row per cell and downstream set) and, for a
one-axis sweep, ``results.png`` (TA and SA against the axis, like Figs. 2–3).
"""

import copy
import itertools
import json
import os
import time

from stolen_jax import console, executors, parallel, pipeline, stages
from stolen_jax.errors import ConfigError, UserError
from stolen_jax.sweep_report import aggregate, write


def parse_value(text: str, like):
  """A swept value from its text, typed like the base config's value ``like``."""
  text = text.strip()
  if isinstance(like, tuple):  # e.g. probe.hidden=(128,64)
    import ast
    try:
      value = tuple(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError):
      raise ConfigError(f"sweep value {text!r} is not a tuple like (128,64)") from None
    return value
  try:
    value = json.loads(text.lower() if text.lower() in ("true", "false", "null") else text)
  except ValueError:
    value = text
  if isinstance(like, bool) and not isinstance(value, bool):
    raise ConfigError(f"sweep value {text!r} is not a bool (true/false)")
  if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(like, str) and not isinstance(value, str):
    value = text
  return value


def _get(config, path: str):
  node = config
  parts = path.split(".")
  for p in parts[:-1]:
    if p not in node:
      raise ConfigError(f"sweep axis {path!r}: the config has no block {p!r}")
    node = node[p]
  if parts[-1] not in node:
    raise ConfigError(f"sweep axis {path!r}: the config has no key {parts[-1]!r}")
  return node, parts[-1]


def parse_axes(config) -> list[tuple[str, list]]:
  """[(dotted key, values)] of ``config.sweep.axes``, values typed like the base config."""
  spec = config.sweep.axes
  axes = []
  for part in [p for p in spec.split(";") if p.strip()]:
    key, sep, values = part.partition("=")
    key = key.strip()
    if not sep or not values.strip():
      raise ConfigError(f"bad sweep axis {part.strip()!r}: expected KEY=V1,V2,...")
    node, leaf = _get(config, key)
    like = node[leaf]
    # Values are separated by ',' — or by '|' when a value itself holds commas, e.g.
    # 'probe.hidden=(128,64)|(256,128)'.
    items = values.split("|") if "|" in values else values.split(",")
    axes.append((key, [parse_value(v, like) for v in items]))
  if not axes:
    raise ConfigError("sweep.axes is empty: e.g. 'steal.lambda_=0,1,5,10,20,30'")
  return axes


def cells(config) -> list[dict]:
  """The sweep's cells, each {dotted key: value}, in order."""
  axes = parse_axes(config)
  choose_mode = config.sweep.mode
  if choose_mode == "zip":
    lengths = {len(v) for _, v in axes}
    if len(lengths) != 1:
      raise ConfigError(f"sweep.mode='zip' needs axes of one length, got {sorted(lengths)}")
    combos = zip(*[v for _, v in axes])
  elif choose_mode == "product":
    combos = itertools.product(*[v for _, v in axes])
  else:
    raise ConfigError(f"unknown sweep.mode {choose_mode!r}; valid choices: product, zip")
  plot = str(config.sweep.get("plot") or "")
  if plot and plot != "frontier" and not plot.startswith("grid:"):
    raise ConfigError(f"unknown sweep.plot {plot!r}; valid: '' (one axis), "
                      "'grid:ROW_AXIS,COL_AXIS', 'frontier'")
  return [dict(zip([k for k, _ in axes], combo)) for combo in combos]


def cell_config(config, overrides: dict, seed: int):
  """The pipeline config of one cell: the base with ``overrides``, ``seed`` for the attack
  and the probes, the target's seed fixed to the base seed (the target is shared)."""
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.job = "pipeline"
    if cfg.target_seed is None:
      cfg.target_seed = config.seed
    cfg.seed = seed
  for key, value in overrides.items():
    node, leaf = _get(cfg, key)
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"sweep value {key}={value!r}: {e}") from None
  return cfg


def cell_key(cfg) -> str:
  """What determines a cell's results: the settings of its stages (as their keys see them),
  not the whole config — so a new config key elsewhere does not void finished cells."""
  from stolen_jax import defenses, pretrain, probe, steal
  key = {
      "target": stages.plain(cfg.steal.target) if cfg.steal.target else pretrain.stage_settings(cfg),
      "steal": steal.steal_settings(cfg),
      "defense": {**defenses.settings(cfg.defense), "shadow": _shadow_key(cfg)},
      "probe": {**probe.probe_settings(cfg.probe), "datasets": cfg.probe.datasets},
      "seed": cfg.seed}
  # A watermarked target and the verification change a cell's results; cells without them
  # keep the keys they always had.
  for block in ("watermark", "verify"):
    if cfg.get(block) is not None and cfg[block].get("enabled"):
      key[block] = stages.settings_of(cfg[block], exclude=("victim", "suspect", "api_key"))
  return stages.key_of(key)


def _shadow_key(cfg) -> dict:
  """The shadow block as cell keys have always held it; its ``batch_size`` (added later)
  only where it changes the shadow — a poisoning cell whose shadow trains at another batch
  than the attacker's — so finished cells keep their keys."""
  shadow = stages.plain(cfg.defense.shadow)
  batch = shadow.pop("batch_size", None)
  if cfg.defense.name == "poison" and batch is not None and batch != cfg.steal.batch_size:
    shadow["batch_size"] = batch
  return shadow


def stacking_enabled(config) -> bool:
  """Whether this sweep stacks its steals: ``sweep.stack_steals`` = on | off | auto (on
  where the default backend is not the CPU)."""
  mode = str(config.sweep.get("stack_steals", "auto")).lower()
  if mode not in ("auto", "on", "off"):
    raise ConfigError(f"sweep.stack_steals={mode!r}; valid choices: auto, on, off")
  if mode == "auto":
    import jax
    return jax.default_backend() != "cpu"
  return mode == "on"


def train_stacks(config, workdir: str, todo: list) -> None:
  """Trains the steal stages of the unfinished cells' configs ``todo`` in stacks (cells of
  one ``steal.stack_group``, at most ``sweep.max_stack`` each) before the cells run; each
  cell then finds its steal stage finished."""
  from stolen_jax import defenses, steal
  groups: dict = {}
  for cfg in todo:
    key = steal.stack_group(cfg)
    if key is not None:
      groups.setdefault(key, []).append(cfg)
  max_stack = int(config.sweep.get("max_stack", 8))
  if max_stack < 1:
    raise ConfigError(f"sweep.max_stack={max_stack} must be >= 1")
  mesh = parallel.make_mesh()
  for cfgs in groups.values():
    if len(cfgs) < 2:
      continue  # Trained alone by its cell.
    cfgs = [copy.deepcopy(c) for c in cfgs]
    target_path, _, _ = pipeline.ensure_target(cfgs[0], workdir, mesh, cfgs[0].get("strict_stages", False))
    for c in cfgs:
      c.steal.target = target_path
    target = steal.open_target(target_path, mesh, cfgs[0].steal.query_batch_size,
                                cfgs[0].steal.get("max_weights_gb"))
    defense = defenses.build(cfgs[0], workdir, target, mesh)
    for start in range(0, len(cfgs), max_stack):
      chunk = cfgs[start:start + max_stack]
      console.stage_line("sweep", f"training {len(chunk)} steals as one stacked program "
                         f"(λ={[c.steal.lambda_ for c in chunk]}, "
                         f"d={[c.steal.distance for c in chunk]})")
      steal.run_stack(chunk, workdir, mesh, target, defense)


def remote_tasks(config, workdir: str, every: list) -> list:
  """The tasks of a remote executor: [(group, stacked)], one cell each, or — with stacking
  on — cells of one stack group (at most ``sweep.max_stack``) in one task that trains their
  steals as one program first."""
  from stolen_jax import defenses, steal
  logs = os.path.join(workdir, "sweep_logs")
  items = [(i, (cfg, overrides, seed, path, os.path.join(logs, os.path.basename(path)[:-5] + ".log")))
           for i, (overrides, seed, cfg, path, record) in enumerate(every) if record is None]
  if not stacking_enabled(config):
    return [([item], False) for item in items]
  groups: dict = {}
  for item in items:
    key = steal.stack_group(item[1][0])
    groups.setdefault(key if key is not None else f"alone-{item[0]}", []).append(item)
  size = max(1, int(config.sweep.get("max_stack", 8)))
  return [(group[s:s + size], len(group[s:s + size]) > 1)
          for group in groups.values() for s in range(0, len(group), size)]


def run(config, workdir: str) -> dict:
  """Runs every cell (resumable; a finished cell is read back), writes the table and plot."""
  cell_list = cells(config)
  seeds = [int(s) for s in config.sweep.seeds]
  total = len(cell_list) * len(seeds)
  done_dir = os.path.join(workdir, "sweep_cells")
  results = []
  t_start = time.perf_counter()
  every = []  # (overrides, seed, cell config, record path, finished record or None)
  for overrides, seed in itertools.product(cell_list, seeds):
    cfg = cell_config(config, overrides, seed)
    path = os.path.join(done_dir, f"{cell_key(cfg)}.json")
    every.append((overrides, seed, cfg, path,
                  parallel.agree(executors.current_record(path, workdir))))
  def label(i):
    overrides, seed = every[i][0], every[i][1]
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) + f", seed={seed}"
  remote = {}
  if config.sweep.get("executor", "local") != "local":  # Ray or SLURM workers run the cells.
    remote = executors.run_remote(config, workdir, remote_tasks(config, workdir, every), label)
  elif stacking_enabled(config):
    train_stacks(config, workdir, [cfg for _, _, cfg, _, record in every if record is None])
  computed = len(remote)
  for i, (overrides, seed, cfg, path, record) in enumerate(every):
    if record is None and i in remote:
      record = remote[i]
    elif record is None:
      console.stage_line("sweep", f"cell {i + 1}/{total}: {label(i)}")
      record = executors.run_cell(cfg, workdir, overrides, seed, path)
      computed += 1
      elapsed = time.perf_counter() - t_start
      left = total - (i + 1)
      scores = ", ".join(f"{r['dataset']} TA {100 * r['ta']:.1f} SA {100 * r['sa']:.1f}"
                         for r in record["rows"])
      from stolen_jax.metrics import format_seconds
      console.stage_line("sweep", f"{i + 1}/{total} cells done ({scores}); ETA "
                         f"{format_seconds(elapsed / computed * left)} for the {left} left")
    else:
      console.stage_line("sweep", f"cell {i + 1}/{total} already finished: {label(i)}")
      # The cell's key says its stages' settings are this cell's, but the record may come
      # from another sweep over other axes: this sweep's names for the cell are used.
      record = {**record, "overrides": overrides, "seed": seed}
    results.append(record)
  axis_keys = [k for k in cell_list[0]]
  table = aggregate(results, axis_keys, config)
  md = write(workdir, table, config, axis_keys) if parallel.is_main() else ""
  if parallel.is_main():
    print("\n" + md)
    if config.sweep.get("doc"):
      from stolen_jax import docs
      path = docs.write_section(config.sweep.doc, config.sweep.doc_section or config.sweep.axes,
                                md, workdir)
      print(f"wrote its section of {path}")
  return {"rows": table, "cells": len(cell_list), "seeds": seeds, "computed": computed}


def sweep_block():
  """Defaults of ``config.sweep``."""
  import ml_collections
  # paper: the paper's TA/SA per cell ('VALUE:TA/SA; ...'), shown beside rows whose downstream
  # set's name contains paper_dataset (its tables' figures are on GTSRB; '' = every row).
  # doc / doc_section: also write the table into that markdown file, in its own section
  # (docs.write_section), so a results doc is written by the command it names.
  # claims: the paper's comparisons checked on the table ('A > B; C ~ D', cells named as in
  # paper), each with its effect against the seeds' spread (stolen_jax.claims).
  # plot: '' (a one-axis sweep: TA and SA against the axis), 'grid:ROW_AXIS,COL_AXIS' (SA
  # heatmap) or 'frontier' (SA/TA against #queries and training minutes, Pareto fronts).
  # executor: local | ray | submitit (stolen_jax.executors); resources: 'KEY=VALUE,...' per
  # cell for the engine; workers: CPUs of a local Ray cluster; ray_address: an existing one;
  # slurm_cluster: '' (SLURM, or what submitit detects) or 'local' (local processes).
  return ml_collections.ConfigDict(dict(axes="", mode="product", seeds=(0,), paper="", claims="",
                                        plot="",
                                        paper_dataset="gtsrb", note="", stack_steals="auto",
                                        max_stack=8, doc="", doc_section="", executor="local",
                                        resources="", workers=2, ray_address="",
                                        slurm_cluster=""))


__all__ = ["run", "cells", "parse_axes", "cell_config", "sweep_block", "UserError"]
