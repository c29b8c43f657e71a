"""A sweep's table: one row per (cell, downstream set) with mean ± std over seeds, the
paper's figures beside the set they were measured on, and results.{md,csv,json,png}."""

import csv
import json
import os

import numpy as np
from absl import logging

from stolen_jax import claims, stages
from stolen_jax.errors import ConfigError


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _fmt(mean, std, pct=True):
  if mean is None:
    return ""
  scale = 100 if pct else 1
  digits = 2 if pct else 4
  text = f"{mean * scale:.{digits}f}"
  return text + (f" ± {std * scale:.{digits}f}" if std is not None else "")


def aggregate(results: list[dict], axis_keys: list[str], config) -> list[dict]:
  """One row per (cell, downstream set): mean and std over seeds."""
  groups: dict = {}
  for rec in results:
    for row in rec["rows"]:
      gk = (json.dumps(rec["overrides"], sort_keys=True), row["dataset"])
      groups.setdefault(gk, {"overrides": rec["overrides"], "dataset": row["dataset"], "runs": []})
      groups[gk]["runs"].append({**row, "seconds": rec["seconds"],
                                 "steal_time": rec["stage_times"].get("steal"),
                                 "verification": rec.get("verification")})
  paper = _paper(config)
  table = []
  for g in groups.values():
    runs = g["runs"]
    out = {**{k: g["overrides"][k] for k in axis_keys}, "dataset": g["dataset"],
           "seeds": len(runs)}
    for name in ("ta", "sa", "cosine", "agreement"):
      out[name], out[f"{name}_std"] = _mean_std([r.get(name) for r in runs])
    for name in ("heldout_cosine", "train_s", "train_gflops"):
      out[name], out[f"{name}_std"] = _mean_std([r.get(name) for r in runs])
    out["sa_over_ta"], out["sa_over_ta_std"] = _mean_std(
        [r["sa"] / r["ta"] if r.get("ta") else None for r in runs])
    out["queries"] = runs[0]["queries"]
    out["num_test"] = runs[0].get("num_test")  # What a probe's accuracy is measured on.
    out["cost"] = runs[0].get("cost")
    out["failed"] = any(r.get("failed") for r in runs)
    if any("ta_undefended" in r for r in runs):
      out["ta_undefended"], _ = _mean_std([r.get("ta_undefended") for r in runs])
      out["utility_cosine"], _ = _mean_std([r.get("utility_cosine") for r in runs])
    out["cell_seconds"] = round(float(np.mean([r["seconds"] for r in runs])), 1)
    if any(r.get("verification") for r in runs):
      out["verification"] = [r["verification"] for r in runs if r.get("verification")]
    value_key = ",".join(str(g["overrides"][k]) for k in axis_keys)
    out["cell"] = value_key
    # The paper's figures stand only beside the downstream set they were measured on.
    on = str(config.sweep.get("paper_dataset", "") or "").lower()
    if value_key in paper and (not on or on in g["dataset"].lower()):
      out["paper_ta"], out["paper_sa"] = paper[value_key]
    table.append(out)
  return table


def _paper_quoted(config) -> str:
  """The paper's figures as one line, for a table none of whose downstream sets is the
  paper's (they are not placed beside rows measured on another set)."""
  paper = _paper(config)
  if not paper:
    return ""
  on = str(config.sweep.get("paper_dataset", "") or "")

  def figure(x):
    return "—" if x is None else f"{x:.2f}"

  figures = "; ".join(f"{v}: {figure(ta)} / {figure(sa)}" for v, (ta, sa) in paper.items())
  where = f"on {on}, a downstream set not probed here" if on else "on its own downstream sets"
  return f"The paper's TA / SA (%) per cell ({where}, so not beside these rows): {figures}."


def _paper(config) -> dict:
  """The paper's (TA, SA) per cell label, from ``sweep.paper`` ('v:ta/sa; v:ta/sa')."""
  spec = config.sweep.get("paper") or ""
  out = {}
  for part in [p for p in spec.split(";") if p.strip()]:
    value, _, nums = part.rpartition(":")
    ta, _, sa = nums.partition("/")
    try:
      out[value.strip()] = (float(ta) if ta.strip() else None, float(sa) if sa.strip() else None)
    except ValueError:
      raise ConfigError(f"bad sweep.paper entry {part!r}: expected VALUE:TA/SA") from None
  return out


def write(workdir: str, table: list[dict], config, axis_keys: list[str]) -> str:
  """results.{md,csv,json} and, for one axis (``axis_keys``), results.png; returns the
  markdown."""
  has_paper = any("paper_sa" in r for r in table)
  has_defense = any("ta_undefended" in r for r in table)
  seeds = len(config.sweep.seeds)
  header = axis_keys + ["Downstream", "TA (%)", "SA (%)", "SA/TA (%)", "#Queries", "Cost ($)",
                        "cos(f_t, f_s)"]
  has_cost = any(r.get("train_s") is not None for r in table)
  if has_cost:
    header += ["held-out cos", "train s", "GFLOPs"]
  if has_defense:
    header += ["TA undefended (%)", "TA drop (pts)", "cos(defended, clean)"]
  if has_paper:
    header += ["paper TA (%)", "paper SA (%)"]
  from stolen_jax.verify import report as verify_report
  verified = verify_report.methods_of(table)
  header += [f"{m} p (flagged)" for m in verified] + ["cell s"]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  for r in table:
    cells_ = [str(r[k]) for k in axis_keys] + [
        r["dataset"] + (" (FAILED)" if r["failed"] else ""), _fmt(r["ta"], r["ta_std"]),
        _fmt(r["sa"], r["sa_std"]), _fmt(r["sa_over_ta"], r["sa_over_ta_std"]), str(r["queries"]),
        "" if r.get("cost") is None else f"{r['cost']:g}", _fmt(r["cosine"], r["cosine_std"], pct=False)]
    if has_cost:
      cells_ += [_fmt(r.get("heldout_cosine"), r.get("heldout_cosine_std"), pct=False),
                 "" if r.get("train_s") is None else f"{r['train_s']:.1f}",
                 "" if r.get("train_gflops") is None else f"{r['train_gflops']:.4g}"]
    if has_defense:
      drop = (None if r.get("ta_undefended") is None or r["ta"] is None
              else r["ta_undefended"] - r["ta"])
      cells_ += [_fmt(r.get("ta_undefended"), None), _fmt(drop, None),
                 _fmt(r.get("utility_cosine"), None, pct=False)]
    if has_paper:
      cells_ += ["" if r.get("paper_ta") is None else f"{r['paper_ta']:.2f}",
                 "" if r.get("paper_sa") is None else f"{r['paper_sa']:.2f}"]
    cells_ += [verify_report.cell_text(r, m) for m in verified] + [str(r["cell_seconds"])]
    lines.append("| " + " | ".join(cells_) + " |")
  lines.append("")
  lines.append(f"Sweep: {config.sweep.axes} ({config.sweep.mode}); seeds {list(config.sweep.seeds)}"
               + (" (mean ± std)" if seeds > 1 else ""))
  if config.sweep.get("note"):
    lines.append(config.sweep.note)
  quoted = _paper_quoted(config) if not has_paper else ""
  if quoted:
    lines.append(quoted)
  if verified:
    lines += ["", "Verification: each method's median p-value over the seeds, and in brackets "
              "the seeds where the stolen encoder was called stolen at α = 0.01 (its TPR). The "
              "innocent encoders, verified against the same targets (their FPR):", "",
              verify_report.innocents_markdown(table).rstrip()]
  checked = claims.markdown(claims.evaluate(config.sweep.get("claims") or "", table))
  if checked:
    lines += ["", "Claims checked on this table: the difference of mean SA and its 95% half-width "
              "over the seeds (verdicts as in `stolen_jax/claims.py`):", "", checked.rstrip()]
  grid = str(config.sweep.get("plot") or "")
  if grid.startswith("grid:"):
    row_key, _, col_key = grid[len("grid:"):].partition(",")
    if row_key not in axis_keys or col_key not in axis_keys:
      raise ConfigError(f"sweep.plot={grid!r}: both keys must be sweep axes ({axis_keys})")
    if _plot_grid(workdir, table, row_key, col_key):
      lines += ["", "![SA per cell](results.png)"]
  elif grid == "frontier":
    if _plot_frontier(workdir, table):
      lines += ["", "![SA/TA against queries and training minutes](results.png)"]
  elif len(axis_keys) == 1 and _plot(workdir, table, axis_keys[0]):
    lines.append("")
    lines.append("![TA and SA](results.png)")
  md = "\n".join(lines) + "\n"
  with open(os.path.join(workdir, "results.md.tmp"), "w") as f:
    f.write(md)
  os.replace(os.path.join(workdir, "results.md.tmp"), os.path.join(workdir, "results.md"))
  # The verification p-values are in results.json (a list per cell, not one CSV value).
  fields = sorted({k for r in table for k in r if k != "verification"},
                  key=lambda k: (k not in axis_keys, k))
  with open(os.path.join(workdir, "results.csv.tmp"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in table:
      w.writerow({k: r.get(k) for k in fields})
  os.replace(os.path.join(workdir, "results.csv.tmp"), os.path.join(workdir, "results.csv"))
  stages.write_json_atomic(os.path.join(workdir, "results.json"),
                           {"axes": config.sweep.axes, "rows": table}, indent=2)
  return md


def _pyplot():
  """matplotlib's pyplot on the file-only backend, or None (with a warning) without it."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    logging.warning("matplotlib is not installed: no plot")
    return None
  return plt


def _save(plt, fig, workdir: str) -> bool:
  """Writes ``fig`` as the sweep's results.png and closes it."""
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "results.png"))
  plt.close(fig)
  return True


def _plot(workdir: str, table: list[dict], axis: str) -> bool:
  """TA and SA against the swept value, one line pair per downstream set (PNG)."""
  plt = _pyplot()
  if plt is None:
    return False
  values = list(dict.fromkeys(r[axis] for r in table))
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
  for dataset in dict.fromkeys(r["dataset"] for r in table):
    rows = {r[axis]: r for r in table if r["dataset"] == dataset}
    xs = values if numeric else list(range(len(values)))
    for key, style, name in (("ta", "--", "TA"), ("sa", "-", "SA")):
      ys = [100 * rows[v][key] if v in rows and rows[v][key] is not None else np.nan for v in values]
      errs = [100 * (rows[v].get(f"{key}_std") or 0) if v in rows else 0 for v in values]
      ax.errorbar(xs, ys, yerr=errs, fmt=style + "o", ms=3, capsize=2, label=f"{name} {dataset}")
  if not numeric:
    ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=20)
  ax.set_xlabel(axis)
  ax.set_ylabel("accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return _save(plt, fig, workdir)


def pareto_front(points):
  """The points (x, y) no other point beats: none with x' ≤ x and y' ≥ y (one better), in
  increasing x — the most SA/TA one can buy for at most x."""
  front, best = [], -np.inf
  for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
    if y > best:
      front.append((x, y))
      best = y
  return front


def _plot_frontier(workdir: str, table: list[dict]) -> bool:
  """SA/TA (mean over seeds) of every cell against its #queries and against its training
  minutes, one colour per downstream set, the Pareto front of each drawn as a step line."""
  plt = _pyplot()
  rows = [r for r in table if r.get("sa_over_ta") is not None and r.get("train_s") is not None]
  if plt is None or not rows:
    return False
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    mine = [r for r in rows if r["dataset"] == dataset]
    for ax, x_of in ((axes[0], lambda r: r["queries"]), (axes[1], lambda r: r["train_s"] / 60)):
      points = [(x_of(r), 100 * r["sa_over_ta"]) for r in mine]
      dots = ax.plot(*zip(*points), "o", ms=4, alpha=0.6, label=dataset)[0]
      ax.step(*zip(*pareto_front(points)), where="post", color=dots.get_color(), lw=1)
  axes[0].set_xscale("log")
  axes[0].set_xlabel("#queries")
  axes[1].set_xlabel("steal training (min, this machine)")
  for ax in axes:
    ax.set(ylabel="SA/TA (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return _save(plt, fig, workdir)


def _plot_grid(workdir: str, table: list[dict], row_key: str, col_key: str) -> bool:
  """SA (mean over seeds) as a heatmap of ``row_key`` × ``col_key``, one panel per
  downstream set and query count (e.g. attacks × defenses at each budget)."""
  plt = _pyplot()
  if plt is None:
    return False
  rows = list(dict.fromkeys(r[row_key] for r in table))
  cols = list(dict.fromkeys(r[col_key] for r in table))
  panels = list(dict.fromkeys((r["dataset"], r["queries"]) for r in table))
  panel_width = max(2.6, 0.8 * len(cols) + 1.8)  # Room for the row labels and the title.
  figsize = (panel_width * len(panels), 0.45 * len(rows) + 1.8)
  fig, axes = plt.subplots(1, len(panels), figsize=figsize, dpi=120, squeeze=False)
  for ax, (dataset, queries) in zip(axes[0], panels):
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in table:
      if r["dataset"] == dataset and r["queries"] == queries and r["sa"] is not None:
        grid[rows.index(r[row_key]), cols.index(r[col_key])] = 100 * r["sa"]
    ax.imshow(grid, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
      for j in range(len(cols)):
        if np.isfinite(grid[i, j]):
          ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=30, fontsize=7)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=7)
    ax.set_title(f"SA (%)\n{dataset}, {queries} queries", fontsize=8)
  return _save(plt, fig, workdir)
