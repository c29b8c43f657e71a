"""The results table of a pipeline run: markdown, CSV and JSON in the workdir."""

import csv
import os

from stolen_jax import stages

COLUMNS = [("dataset", "Downstream"), ("ta", "TA (%)"), ("sa", "SA (%)"), ("sa_over_ta", "SA/TA (%)"),
           ("queries", "#Queries"), ("cost", "Cost ($)"), ("cosine", "cos(f_t, f_s)"),
           ("agreement", "Agreement (%)")]
# Shown only when a defense is active: what it costs the honest customers.
DEFENSE_COLUMNS = [("ta_undefended", "TA undefended (%)"), ("ta_drop", "TA drop (pts)"),
                   ("utility_cosine", "cos(defended, clean)")]


def _pct(x):
  return None if x is None else round(100 * x, 2)


def rows_for_table(rows: list[dict]) -> list[dict]:
  """Percentages rounded for display, SA/TA computed (Eq. 8, 9)."""
  out = []
  for r in rows:
    row = {"dataset": r["dataset"] + (" (steal FAILED)" if r.get("failed") else ""),
           "ta": _pct(r["ta"]), "sa": _pct(r["sa"]),
           "sa_over_ta": _pct(r["sa"] / r["ta"]) if r["ta"] else None,
           "queries": r["queries"], "cost": r.get("cost"),
           "cosine": None if r["cosine"] is None else round(r["cosine"], 4),
           "agreement": _pct(r["agreement"])}
    if "ta_undefended" in r:
      row.update(ta_undefended=_pct(r["ta_undefended"]),
                 ta_drop=round(100 * (r["ta_undefended"] - r["ta"]), 2),
                 utility_cosine=None if r["utility_cosine"] is None else round(
                     r["utility_cosine"], 4))
    out.append(row)
  return out


def _columns(table):
  return COLUMNS + ([c for c in DEFENSE_COLUMNS] if any("ta_undefended" in r for r in table) else [])


def _fmt(d: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in d.items())


def markdown(rows: list[dict], settings: dict, stage_times: dict, context: dict | None = None) -> str:
  """A markdown table of the results, the attack/target/probe/defense settings and times."""
  table = rows_for_table(rows)
  columns = _columns(table)
  lines = ["| " + " | ".join(title for _, title in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  for r in table:
    lines.append("| " + " | ".join("" if r.get(k) is None else str(r[k]) for k, _ in columns) + " |")
  lines.append("")
  context = context or {}
  if context.get("failed"):
    lines.append(f"**The steal FAILED**: {context['failed']}")
  lines.append("Attack: " + _fmt(settings))
  for key, title in (("target", "Target"), ("defense", "Defense"), ("probe", "Probe")):
    if context.get(key):
      lines.append(f"{title}: " + _fmt(context[key]))
  lines.append("Stage times: " + ", ".join(f"{k} {v}" for k, v in stage_times.items()))
  return "\n".join(lines) + "\n"


# What the table's columns mean, printed under it on the console.
LEGEND = ("TA / SA: test accuracy of the downstream MLP on the target's / the stolen encoder's "
          "features; cos(f_t, f_s): their features' mean cosine similarity on the test images; "
          "Agreement: share of test images the two probes classify alike.\n")


def plot(workdir: str, rows: list[dict]) -> bool:
  """results.png: TA and SA side by side per downstream set (bars, %)."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  import numpy as np
  names = [r["dataset"] for r in rows]
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(rows), 3.2), dpi=120)
  ta = [100 * r["ta"] for r in rows]
  sa = [100 * r["sa"] for r in rows]
  ax.bar(x - 0.18, ta, 0.36, label="TA (target)")
  ax.bar(x + 0.18, sa, 0.36, label="SA (stolen)")
  for xi, (t, s_) in enumerate(zip(ta, sa)):
    ax.text(xi - 0.18, t + 1, f"{t:.1f}", ha="center", fontsize=7)
    ax.text(xi + 0.18, s_ + 1, f"{s_:.1f}", ha="center", fontsize=7)
  for xi, r in enumerate(rows):  # Chance: one over the set's classes.
    if r.get("classes"):
      ax.hlines(100 / r["classes"], xi - 0.4, xi + 0.4, colors="gray", linestyles="dashed",
                label="chance" if xi == 0 else None)
  ax.set_xticks(x, names)
  ax.set_ylabel("downstream accuracy (%)")
  ax.set_ylim(0, 105)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title(f"{rows[0]['queries']} queries", fontsize=9)
  fig.tight_layout()
  tmp = os.path.join(workdir, "results.tmp.png")
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, os.path.join(workdir, "results.png"))
  return True


def write(workdir: str, rows: list[dict], settings: dict, stage_times: dict,
          context: dict | None = None) -> str:
  """Writes results.md (linking results.png), results.csv and results.json (each
  atomically); returns the markdown."""
  md = markdown(rows, settings, stage_times, context)
  from stolen_jax import parallel
  if not parallel.is_main():
    return md
  if rows and plot(workdir, rows):
    md += "\n![TA and SA per downstream set](results.png)\n"
  tmp = os.path.join(workdir, "results.md.tmp")
  with open(tmp, "w") as f:
    f.write(md)
  os.replace(tmp, os.path.join(workdir, "results.md"))
  table = rows_for_table(rows)
  flat = {**settings, **{f"target_{k}": v for k, v in (context or {}).get("target", {}).items()},
          **{f"defense_{k}": v for k, v in (context or {}).get("defense", {}).items()},
          **{f"probe_{k}": v for k, v in (context or {}).get("probe", {}).items()}}
  tmp = os.path.join(workdir, "results.csv.tmp")
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=[k for k, _ in _columns(table)] + sorted(flat))
    writer.writeheader()
    for r in table:
      writer.writerow({**r, **flat})
  os.replace(tmp, os.path.join(workdir, "results.csv"))
  stages.write_json_atomic(os.path.join(workdir, "results.json"),
                           {"rows": table, "raw": rows, "settings": settings,
                            "stage_times": stage_times, **(context or {})}, indent=2)
  return md
