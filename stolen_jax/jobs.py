"""Job dispatch: ``config.job`` -> the stage that runs it, with up-front checks.

Before any stage runs: every name and count in the config is checked (``validate``) and
every dataset the job will read is checked to be there (``preflight``), so a bad setting or
a missing dataset fails in seconds with all the problems listed, not hours into a run.
"""

import json
import os

from absl import logging

from stolen_jax import parallel, runtime
from stolen_jax.errors import UserError, choose


def load_config_file(path: str, arg: str = ""):
  """``get_config()`` of the config file at ``path`` (``get_config(arg)`` when ``arg`` is
  given), as ``--config=PATH[:ARG]`` loads it."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("stolen_jax_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _pretrain(config, workdir):
  from stolen_jax import pretrain
  stage, data = pretrain.open_stage(config, workdir, config.get("strict_stages", False))
  done = stage.completed()
  if done is not None:
    logging.info("pretrain: restored the finished stage %s", stage.dir)
    return {**done, "stage_dir": stage.dir}
  with stage.claimed() as mine:  # Another process on this workdir may be training it.
    if not mine:
      return {**stage.completed(), "stage_dir": stage.dir}
    summary = pretrain.train(config.pretrain, stage.dir, pretrain.target_seed(config), data=data)
  print(f"target encoder: {stage.dir}")
  return {**summary, "stage_dir": stage.dir}


def _steal(config, workdir):
  from stolen_jax import steal
  summary = steal.run(config, workdir)
  print(paid_line(summary, config.steal.price_per_1000))
  print(f"stolen encoder: {summary['stage_dir']}")
  return summary


def paid_line(summary: dict, price_per_1000: float) -> str:
  """'paid 512 queries ($0.6144) ...': what the steal cost, as the provider bills it (the
  API's own bill when it has one, else queries at ``price_per_1000``)."""
  queries = int(summary.get("queries") or 0)
  now = summary.get("queries_this_run")
  cost = summary.get("api_cost")
  cost = queries * price_per_1000 / 1000 if cost is None else cost
  where = f" to {summary['api']}" if summary.get("api") else ""
  text = f"paid {queries} queries{where} (${cost:.4f})"
  if summary.get("restored"):
    return text + "; restored, nothing paid now"
  if now is not None and now != queries:
    text += f", {now} of them in this run"
  if summary.get("api_used") is not None and summary["api_used"] != queries:
    text += f"; the API's account shows {summary['api_used']} used in all"
  if summary.get("api_maybe_billed"):
    text += (f"; {summary['api_maybe_billed']} more may have been billed (requests sent that "
             "got no answer)")
  return text


def _probe(config, workdir):
  from stolen_jax import probe
  return probe.run(config, workdir)


def _pipeline(config, workdir):
  from stolen_jax import pipeline
  return pipeline.run(config, workdir)


def _sweep(config, workdir):
  from stolen_jax import sweep
  return sweep.run(config, workdir)


def _serve(config, workdir):
  from stolen_jax import serve
  return serve.run(config, workdir)


def _verify(config, workdir):
  from stolen_jax.verify import job
  return job.run(config, workdir)


def _watermark(config, workdir):
  from stolen_jax.verify import embed
  return embed.run(config, workdir)


def _prepare(config, workdir):
  from stolen_jax.data import prepare
  return prepare.run(config, workdir)


JOBS = {"prepare": _prepare, "pretrain": _pretrain, "steal": _steal, "probe": _probe, "pipeline": _pipeline,
        "sweep": _sweep, "serve": _serve, "verify": _verify,
        "watermark": _watermark}


def _uses(config, block: str) -> bool:
  """Whether ``config.job`` reads the config block ``block``."""
  job = "pipeline" if config.job == "sweep" else config.job
  if block == "pretrain":
    return job == "pretrain" or (job == "pipeline" and not config.steal.target) or (
        job in ("steal", "pipeline") and config.steal.variant == "pretrain_encoder")
  if block == "steal":
    return job in ("steal", "pipeline")
  if block == "probe":
    return job in ("probe", "pipeline")
  return False


def validate(config) -> None:
  """Checks names (job, architectures, augmentations, datasets, optimizers, defense) and
  counts (epochs, batch sizes, sizes, rates) before any work, so a typo fails in a second
  with the valid choices instead of after data loading or after queries were paid."""
  from stolen_jax import augment, defenses, models, optim
  from stolen_jax.data import sources
  choose("job", config.job, JOBS)
  if config.job == "sweep":
    from stolen_jax import sweep
    if config.get("sweep") is None:
      from stolen_jax.errors import ConfigError
      raise ConfigError("job 'sweep' needs a config.sweep block (axes, mode, seeds)")
    if not list(config.sweep.seeds):
      from stolen_jax.errors import ConfigError
      raise ConfigError("sweep.seeds is empty")
    for overrides in sweep.cells(config):  # Every cell, before anything runs.
      validate(sweep.cell_config(config, overrides, list(config.sweep.seeds)[0]))
  if config.get("probe") is not None and _uses(config, "probe"):
    from stolen_jax import probe
    probe.validate_settings(config.probe)
  if config.get("pretrain") is not None and _uses(config, "pretrain"):
    from stolen_jax import pretrain
    pretrain.validate_settings(config.pretrain)
  if config.get("steal") is not None and _uses(config, "steal"):
    from stolen_jax import steal
    steal.validate_settings(config.steal)
    feature_dim = None
    if not config.steal.target and config.get("pretrain") is not None:
      # The target is pre-trained here: its feature dimension is known now, so a defense
      # that cannot apply to it (top-k with k > dim) fails before pretraining, not after.
      p = config.pretrain
      choose("pretrain.arch", p.arch, models.names())
      feature_dim = models.get(p.arch, width=p.width).feature_dim
    defenses.validate(config.get("defense"), feature_dim)
    if config.job == "pipeline" and steal.is_remote(config.steal.target):
      from stolen_jax.errors import ConfigError
      raise ConfigError("the pipeline probes the target itself, so it needs a checkpoint; "
                        "steal from an HTTP API with job=steal (--config.job=steal)")
  if config.job == "prepare":
    from stolen_jax.data import prepare
    if config.get("prepare") is None:
      from stolen_jax.errors import ConfigError
      raise ConfigError("job 'prepare' needs a config.prepare block (configs/prepare.py)")
    choose("prepare.format", config.prepare.format, prepare.FORMATS)
  if config.job == "verify":
    from stolen_jax.verify import job
    job.validate(config)
  if config.job == "watermark":
    from stolen_jax.verify import embed
    if config.get("watermark") is None:
      from stolen_jax.errors import ConfigError
      raise ConfigError("job 'watermark' needs a config.watermark block (configs/watermark.py)")
    embed.validate(config.watermark)
  if config.job == "serve":
    from stolen_jax import serve
    if config.get("serve") is None:
      from stolen_jax.errors import ConfigError
      raise ConfigError("job 'serve' needs a config.serve block (configs/serve.py)")
    choose("serve.action", config.serve.action, serve.ACTIONS)
    defenses.validate(config.get("defense"))
  for block_name in ("pretrain", "steal"):
    block = config.get(block_name)
    if block is None:
      continue
    if "arch" in block:
      choose(f"{block_name}.arch", block.arch, models.names())
    if "augment" in block:
      augment.parse_names(block.augment)
    if "optimizer" in block:
      choose(f"{block_name}.optimizer", block.optimizer, optim.OPTIMIZERS)
    for key in ("dataset", "surrogate"):
      if block.get(key):
        sources.parse_spec(block[key])


def datasets_read(config) -> list[tuple[str, str, str, object]]:
  """(purpose, spec, split, data_dir) of every dataset split the job will read."""
  out = []
  if config.get("pretrain") is not None and _uses(config, "pretrain"):
    p = config.pretrain
    if config.job != "steal" or config.steal.variant != "pretrain_encoder":
      out.append(("pretraining set", p.dataset, p.split, p.data_dir))
      if p.knn.enabled:
        spec = p.knn.dataset or p.dataset
        out += [("kNN monitor", spec, p.knn.train_split, p.data_dir),
                ("kNN monitor", spec, p.knn.test_split, p.data_dir)]
  if config.get("steal") is not None and _uses(config, "steal"):
    s = config.steal
    out.append(("surrogate set", s.surrogate, s.surrogate_split, s.data_dir))
    from stolen_jax import targets
    remote = targets.is_remote(s.target)
    if s.eval_heldout and s.variant != "pretrain_encoder" and not remote:
      out.append(("held-out fidelity", s.surrogate, s.heldout_split, s.data_dir))
    d = config.get("defense")
    if d is not None and d.name == "poison":
      pre = config.get("pretrain")
      spec = d.shadow.dataset or (pre.dataset if pre is not None else None)
      if spec:
        out.append(("poisoning's shadow set", spec, d.shadow.split, s.data_dir))
  if config.get("probe") is not None and _uses(config, "probe"):
    from stolen_jax import probe
    q = config.probe
    for spec in probe.parse_datasets(q.datasets):
      out += [("downstream", spec, q.train_split, q.data_dir),
              ("downstream", spec, q.test_split, q.data_dir)]
  seen, unique = set(), []
  for item in out:
    if item[1:] not in seen:
      seen.add(item[1:])
      unique.append(item)
  return unique


def all_datasets_read(config) -> list:
  """``datasets_read`` of the job, or of every cell of a sweep."""
  if config.job != "sweep":
    return datasets_read(config)
  from stolen_jax import sweep
  out = []
  for overrides in sweep.cells(config):
    out += [d for d in datasets_read(sweep.cell_config(config, overrides, config.seed)) if d not in out]
  return out


def run(config, workdir: str):
  """Runs ``config.job`` in ``workdir`` and returns its summary."""
  from stolen_jax.data import preflight
  # First: joining a multi-process job must come before anything touches a device.
  parallel.maybe_initialize_distributed(config)
  validate(config)
  preflight.check(all_datasets_read(config))
  if config.get("compilation_cache", True):
    runtime.enable_compilation_cache()
  try:
    os.makedirs(workdir, exist_ok=True)
    if parallel.is_main():
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
  except (NotADirectoryError, FileExistsError, PermissionError, IsADirectoryError) as e:
    raise UserError(f"cannot use workdir {workdir!r}: {e}") from None
  summary = JOBS[config.job](config, workdir)
  logging.info("%s finished: %s", config.job,
               json.dumps({k: v for k, v in summary.items() if k != "history"}, default=str))
  return summary
