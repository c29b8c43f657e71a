"""The results table of a pipeline run: markdown, CSV and JSON in the workdir."""

import csv
import json
import os

COLUMNS = [("dataset", "Downstream"), ("ta", "TA (%)"), ("sa", "SA (%)"), ("sa_over_ta", "SA/TA (%)"),
           ("queries", "#Queries"), ("cosine", "cos(f_t, f_s)"), ("agreement", "Agreement (%)")]


def _pct(x):
  return None if x is None else round(100 * x, 2)


def rows_for_table(rows: list[dict]) -> list[dict]:
  """Percentages rounded for display, SA/TA computed (Eq. 8, 9)."""
  out = []
  for r in rows:
    out.append({"dataset": r["dataset"], "ta": _pct(r["ta"]), "sa": _pct(r["sa"]),
                "sa_over_ta": _pct(r["sa"] / r["ta"]) if r["ta"] else None,
                "queries": r["queries"], "cosine": round(r["cosine"], 4),
                "agreement": _pct(r["agreement"])})
  return out


def markdown(rows: list[dict], settings: dict, stage_times: dict) -> str:
  """A markdown table of the results, the attack settings and the stage times."""
  table = rows_for_table(rows)
  lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
           "|" + "|".join("---" for _ in COLUMNS) + "|"]
  for r in table:
    lines.append("| " + " | ".join("" if r[k] is None else str(r[k]) for k, _ in COLUMNS) + " |")
  lines.append("")
  lines.append("Attack: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
  lines.append("Stage times: " + ", ".join(f"{k} {v}" for k, v in stage_times.items()))
  return "\n".join(lines) + "\n"


def write(workdir: str, rows: list[dict], settings: dict, stage_times: dict) -> str:
  """Writes results.md, results.csv and results.json; returns the markdown."""
  md = markdown(rows, settings, stage_times)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(md)
  table = rows_for_table(rows)
  with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=[k for k, _ in COLUMNS] + sorted(settings))
    writer.writeheader()
    for r in table:
      writer.writerow({**r, **settings})
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"rows": table, "raw": rows, "settings": settings, "stage_times": stage_times}, f, indent=2)
  return md
