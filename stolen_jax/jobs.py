"""Job dispatch: ``config.job`` -> the stage that runs it, with up-front config checks."""

import json
import os

from absl import logging

from stolen_jax import parallel, runtime
from stolen_jax.errors import choose


def _pretrain(config, workdir):
  from stolen_jax import pretrain
  return pretrain.train(config.pretrain, os.path.join(workdir, "pretrain"), config.seed)


def _steal(config, workdir):
  from stolen_jax import steal
  return steal.run(config, os.path.join(workdir, "steal"))


def _probe(config, workdir):
  from stolen_jax import probe
  return probe.run(config, os.path.join(workdir, "probe"))


def _pipeline(config, workdir):
  from stolen_jax import pipeline
  return pipeline.run(config, workdir)


JOBS = {"pretrain": _pretrain, "steal": _steal, "probe": _probe, "pipeline": _pipeline}


def validate(config) -> None:
  """Checks names (job, architectures, augmentations, datasets, optimizers) before any work,
  so a typo fails in a second with the valid choices instead of after data loading."""
  from stolen_jax import augment, models, optim
  from stolen_jax.data import sources
  choose("job", config.job, JOBS)
  if config.get("probe") is not None and config.job in ("probe", "pipeline"):
    from stolen_jax import probe
    probe.parse_datasets(config.probe.datasets)
  if config.get("pretrain") is not None:
    from stolen_jax import pretrain
    choose("pretrain.method", config.pretrain.method, pretrain.METHODS)
  if config.get("steal") is not None and config.job in ("steal", "pipeline"):
    from stolen_jax import steal
    steal.validate_settings(config.steal)
  for block_name in ("pretrain", "steal"):
    block = config.get(block_name)
    if block is None:
      continue
    for key in ("arch",):
      if key in block:
        choose(f"{block_name}.arch", block[key], models.names())
    if "augment" in block:
      augment.parse_names(block.augment)
    if "optimizer" in block:
      choose(f"{block_name}.optimizer", block.optimizer, optim.OPTIMIZERS)
    for key in ("dataset", "surrogate"):
      if block.get(key):
        sources.parse_spec(block[key])


def run(config, workdir: str):
  """Runs ``config.job`` in ``workdir`` and returns its summary."""
  validate(config)
  if config.get("compilation_cache", True):
    runtime.enable_compilation_cache()
  parallel.maybe_initialize_distributed(config.multihost)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  summary = JOBS[config.job](config, workdir)
  logging.info("%s finished: %s", config.job,
               json.dumps({k: v for k, v in summary.items() if k != "history"}))
  return summary
