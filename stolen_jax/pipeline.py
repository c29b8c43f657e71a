"""``job='pipeline'``: target -> query -> steal -> probes -> results table, in one workdir.

Every stage lives in a directory keyed by the settings that determine it (``stages``):
``pretrain/<key>``, ``query/<key>``, ``steal/<key>``, ``shadow/<key>`` (poisoning's shadow
encoder), ``probe/<dataset>/<key>``. A finished stage with the same key is restored (no
training, no query); a changed setting computes its stage — and only the stages downstream
of it — afresh, reusing paid answers wherever their key still holds. Stage times go into
the table.
"""

import copy
import os
import time

import numpy as np
from absl import logging

from stolen_jax import (console, defenses, eaas, features, losses, parallel, pretrain, probe,
                        report, stages, steal, targets)


def _seconds(t0: float) -> str:
  return f"{time.perf_counter() - t0:.1f}s"


def ensure_target(config, workdir: str, mesh, strict: bool = False) -> tuple[str, str, dict]:
  """(target checkpoint path, how it was obtained, its settings): the given
  ``steal.target``, or the pretraining stage of this config (trained if not yet)."""
  if config.steal.target:
    return config.steal.target, "given", targets.describe(config.steal.target)
  stage, data = pretrain.open_stage(config, workdir, strict)
  if stage.completed() is not None:
    logging.info("target: restored the finished stage %s", stage.dir)
    return stage.dir, "restored", stage.record["settings"]
  with stage.claimed() as mine:  # Another process on this workdir may be training it.
    if not mine:
      return stage.dir, "restored", stage.record["settings"]
    t0 = time.perf_counter()
    pretrain.train(config.pretrain, stage.dir, pretrain.target_seed(config), mesh=mesh, data=data)
  return stage.dir, _seconds(t0), stage.record["settings"]


def target_table_settings(config, given: bool, summary: dict | None) -> dict:
  """The target's settings as the results table shows them."""
  if given:
    return targets.describe(config.steal.target)
  p = config.pretrain
  out = {"method": p.method, "arch": p.arch, "width": p.width, "dataset": p.dataset,
         "epochs": p.epochs, "batch_size": p.batch_size, "lr": p.lr}
  if summary and summary.get("knn_accuracy") is not None:
    out["knn_accuracy"] = round(summary["knn_accuracy"], 4)
  return out


def _target_line(how: str, summary: dict | None, path: str) -> str:
  if summary is None:
    return f"given: {path}"
  knn = ""
  if summary.get("knn_accuracy") is not None:
    init = summary.get("knn_accuracy_init")
    knn = f", kNN accuracy {(f'{init:.3f} -> ') if init is not None else ''}{summary['knn_accuracy']:.3f}"
  what = "restored" if how == "restored" else f"trained in {how}"
  return (f"{what}: {summary.get('arch')} on {summary.get('num_images')} images of "
          f"{summary.get('dataset')}{knn} ({path})")


def _steal_line(how: str, s: dict) -> str:
  what = "restored" if how == "restored" else f"trained in {how}"
  text = (f"{what}: {s.get('stolen_arch', s.get('arch'))} from {s.get('queries')} queries "
          f"({s.get('surrogate')})")
  held = s.get("heldout")
  if held:
    text += (f", held-out cosine to the target {held['stolen_cosine']:.3f} "
             f"(random encoder {held['random_cosine']:.3f})")
  if s.get("failed"):
    text += f" -- FAILED: {s['failed']}"
  return text


def _meaning(rows: list[dict], steal_summary: dict, pretrain_summary: dict | None) -> str:
  """One sentence on what the table means."""
  ratios = [r["sa"] / r["ta"] for r in rows if r["ta"]]
  if not ratios or steal_summary.get("variant") == "pretrain_encoder":
    return ""
  queries = steal_summary.get("queries")
  of = ""
  if pretrain_summary and pretrain_summary.get("num_images"):
    n = pretrain_summary["num_images"]
    of = f" ({100 * queries / n:.0f}% of the {n} images the target was pre-trained on)"
  lo, hi = round(100 * min(ratios)), round(100 * max(ratios))
  span = f"{lo}%" if lo == hi else f"{lo}-{hi}%"
  return (f"\nThe attacker paid {queries} queries{of} and its stolen encoder reaches {span} of "
          "the target's downstream accuracy (SA/TA).\n")


def run(config, workdir: str, mesh=None, print_table: bool = True, write_report: bool = True) -> dict:
  """Runs every stage of the attack and its evaluation; returns the results (and writes
  ``results.{md,csv,json}`` unless ``write_report`` is False, as in a sweep's cells)."""
  config = copy.deepcopy(config)  # The stages see resolved paths; the caller's config is unchanged.
  mesh = mesh or parallel.make_mesh()
  strict = config.get("strict_stages", False)
  seed = config.seed
  times = {}

  given = bool(config.steal.target)
  target_path, times["target"], _ = ensure_target(config, workdir, mesh, strict)
  pretrain_summary = None if given else stages.read_json(os.path.join(target_path, "summary.json"))
  if config.get("watermark") is not None and config.watermark.get("enabled"):
    from stolen_jax.verify import embed  # The provider serves a watermarked target instead.
    target_path = embed.watermarked_target(config, workdir, target_path)
  config.steal.target = target_path
  console.stage_line("target", _target_line(times["target"], pretrain_summary, target_path))
  target = steal.open_target(target_path, mesh, config.steal.query_batch_size,
                            config.steal.get("max_weights_gb"))
  t0 = time.perf_counter()
  defense = defenses.build(config, workdir, target, mesh)
  if defense.name == "poison":
    times["shadow"] = _seconds(t0)

  t0 = time.perf_counter()
  steal_summary = steal.run(config, workdir, mesh=mesh, target=target, defense=defense)
  times["steal"] = "restored" if steal_summary.get("restored") else _seconds(t0)
  console.stage_line("steal", _steal_line(times["steal"], steal_summary))

  t0 = time.perf_counter()
  cfg = config.probe
  # The target is probed through the API (a customer's queries, logged apart from the
  # attacker's), so a defense perturbs TA's features exactly as it does the attacker's (§VII).
  target_service = eaas.QueryService(
      target.features_fn, defense=defense,
      log_path=os.path.join(workdir, "probe", "target_api_queries.jsonl"), account="customer")
  stolen_fn, stolen_meta = features.restore_features_fn(steal_summary["stage_dir"], mesh,
                                                     cfg.feature_batch_size)
  target_id = {"encoder": target.meta["fingerprint"], "defense": defense.settings}
  rows = []
  for spec in probe.parse_datasets(cfg.datasets):
    train, test = probe.load_downstream(spec, cfg, seed)
    slug = probe.dataset_slug(spec)
    t_probe = probe.probe_stage(workdir, spec, target_service.query, target_id, train, test, cfg,
                                mesh, seed, strict)
    s_probe = probe.probe_stage(workdir, spec, stolen_fn, {"encoder": stolen_meta["fingerprint"]},
                                train, test, cfg, mesh, seed, strict)
    fid = probe.fidelity(t_probe, s_probe)
    if defense.out_dim is not None or config.steal.get("answer_scaling", "none") != "none":
      # Per-account spaces (B4B), or a loss on normalised z-scores (each feature's distance
      # from the answers' mean free): per-image cosines in the target's space mean nothing.
      fid["cosine_similarity"] = None
    row = {"dataset": slug, "ta": t_probe["accuracy"], "sa": s_probe["accuracy"],
           "queries": steal_summary["queries"],
           "cost": round(steal_summary["queries"] * config.steal.price_per_1000 / 1000, 4),
           "cosine": fid["cosine_similarity"], "agreement": fid["agreement"], "num_train": len(train),
           "num_test": len(test), "classes": int(train.num_classes or len(np.unique(train.labels))),
           # The attack's training cost and its fidelity on held-out images (the true target).
           "train_s": steal_summary.get("train_s"), "train_gflops": steal_summary.get("train_gflops"),
           "heldout_cosine": (steal_summary.get("heldout") or {}).get("stolen_cosine")}
    if defense.name != "none":
      # The honest customers' cost: the same probe on undefended answers.
      clean = probe.probe_stage(workdir, spec, target.features_fn,
                                {"encoder": target.meta["fingerprint"], "defense": {"name": "none"}},
                                train, test, cfg, mesh, seed, strict)
      clean_f, defended_f = (np.asarray(p["test_features"]) for p in (clean, t_probe))
      row.update(ta_undefended=clean["accuracy"], utility_cosine=None if (
          clean_f.shape != defended_f.shape) else -float(losses.distance("cosine", clean_f,
                                                                         defended_f)))
    if steal_summary.get("failed"):
      row["failed"] = True
    rows.append(row)
    console.stage_line("probe", f"{slug}: TA {100 * row['ta']:.1f}%, SA {100 * row['sa']:.1f}% "
                       f"(SA/TA {row['sa'] / row['ta']:.2f}; {len(train)} train / {len(test)} "
                       "test images)" if row["ta"] else f"{slug}: TA 0")
  times["probes"] = _seconds(t0)
  settings = {k: steal_summary.get(k) for k in (
      "attack", "variant", "stolen_arch", "surrogate", "surrogate_size", "distance", "lambda",
      "normalize_features", "reduction", "bn_passes", "augment", "epochs") if k in steal_summary}
  context = {
      "target": target_table_settings(config, given, pretrain_summary),
      "probe": {"hidden": list(cfg.hidden), "epochs": cfg.epochs, "lr": cfg.lr,
                "batch_size": cfg.batch_size, "dropout": cfg.dropout},
      "defense": defense.settings,
      "stages": {"steal": steal_summary["stage_dir"]},
  }
  if steal_summary.get("failed"):
    context["failed"] = steal_summary["failed"]
  verification = None
  if config.get("verify") is not None and config.verify.get("enabled"):
    from stolen_jax.verify import study
    t0 = time.perf_counter()
    verification = study.verify_cell(config, workdir, target_path, steal_summary["stage_dir"],
                                      target, mesh)
    times["verify"] = _seconds(t0)
  md = report.markdown(rows, settings, times, context)
  if write_report:
    report.write(workdir, rows, settings, times, context)
  if print_table and parallel.is_main():
    print("\n" + md + report.LEGEND + _meaning(rows, steal_summary, pretrain_summary)
          + (f"Written to {os.path.join(workdir, 'results')}.{{md,csv,json,png}}\n"
             if write_report else ""))
  logging.info("results written to %s/results.{md,csv,json}", os.path.abspath(workdir))
  return {"rows": rows, "settings": settings, "stage_times": times, "context": context,
          **({"verification": verification} if verification is not None else {})}
