"""``job='pipeline'``: target -> query -> steal -> probes -> results table, in one workdir.

Each stage is skipped when its output is complete (its ``summary.json`` says so): the
target and stolen encoders are restored, cached answers cost no query, cached features and
finished probes are reused. Stage times go into the table.
"""

import copy
import json
import os
import time

from absl import logging

from stolen_jax import eaas, parallel, pretrain, probe, report, steal


def _complete(stage_dir: str):
  path = os.path.join(stage_dir, "summary.json")
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
    if summary.get("complete"):
      return summary
  return None


def run(config, workdir: str, mesh=None, defense=None) -> dict:
  """Runs every stage of the attack and its evaluation; returns the results."""
  config = copy.deepcopy(config)  # The stages see resolved paths; the caller's config is unchanged.
  mesh = mesh or parallel.make_mesh()
  times = {}

  t0 = time.perf_counter()
  if config.steal.target:
    target_path = config.steal.target
    times["target"] = "given"
  else:
    target_path = os.path.join(workdir, "pretrain")
    if _complete(target_path):
      times["target"] = "restored"
    else:
      pretrain.train(config.pretrain, target_path, config.seed)
      times["target"] = f"{time.perf_counter() - t0:.1f}s"
  config.steal.target = target_path

  t0 = time.perf_counter()
  steal_dir = os.path.join(workdir, "steal")
  steal_summary = _complete(steal_dir)
  if steal_summary:
    times["steal"] = "restored"
  else:
    steal_summary = steal.run(config, steal_dir, mesh=mesh, defense=defense)
    times["steal"] = f"{time.perf_counter() - t0:.1f}s"

  t0 = time.perf_counter()
  cfg = config.probe
  # The target is probed through the API (a customer's queries, logged apart from the
  # attacker's), so a defense perturbs TA's features exactly as it does the attacker's (§VII).
  target_service, _ = eaas.from_checkpoint(
      target_path, mesh, defense=defense or eaas.service.identity_defense,
      log_path=os.path.join(workdir, "probe", "target_api_queries.jsonl"),
      batch_size=cfg.feature_batch_size)
  stolen_fn, _ = probe.encoder_features_fn(steal_dir, mesh, cfg.feature_batch_size)
  rows = []
  probe_dir = os.path.join(workdir, "probe")
  for spec in probe.parse_datasets(cfg.datasets):
    train, test = probe.load_downstream(spec, cfg, config.seed)
    slug = probe.dataset_slug(spec)
    target = probe.probe_one(f"{slug}/target", target_service.query, train, test, cfg, probe_dir,
                             mesh, config.seed)
    stolen = probe.probe_one(f"{slug}/stolen", stolen_fn, train, test, cfg, probe_dir, mesh,
                             config.seed)
    fid = probe.fidelity(target, stolen)
    rows.append({"dataset": slug, "ta": target["accuracy"], "sa": stolen["accuracy"],
                 "queries": steal_summary["queries"], "cosine": fid["cosine_similarity"],
                 "agreement": fid["agreement"], "num_train": len(train), "num_test": len(test)})
  times["probes"] = f"{time.perf_counter() - t0:.1f}s"
  settings = {k: steal_summary.get(k) for k in (
      "variant", "stolen_arch", "surrogate", "surrogate_size", "distance", "lambda",
      "normalize_features", "reduction", "bn_passes", "augment", "epochs") if k in steal_summary}
  md = report.write(workdir, rows, settings, times)
  print("\n" + md)
  logging.info("results written to %s/results.{md,csv,json}", os.path.abspath(workdir))
  return {"rows": rows, "settings": settings, "stage_times": times}
