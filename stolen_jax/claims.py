"""A paper's claims checked against a sweep's own table, with the seeds' spread.

``sweep.claims`` lists comparisons between cells, named by their axis values as in
``sweep.paper`` (``"l2,adam > cosine,adam; query_aug ~ stolenencoder"``): ``A > B`` claims A's
SA exceeds B's, ``A ~ B`` that they are about equal. For every downstream set the sweep
writes the difference of mean SA (points), its 95% half-width 2·SE (SE = √(s_A²/n_A +
s_B²/n_B) over the seeds) and a verdict: ``holds`` (A > B: the interval above 0; A ~ B: the
interval within ±2 points), ``does not hold`` (A > B: the interval at or below 0; A ~ B: the
interval outside ±2 points), ``not resolved`` otherwise or with one seed (no spread to weigh
the effect against).
"""

import math

from stolen_jax.errors import ConfigError

EQUAL_WITHIN = 2.0  # Points: the margin "about equal" allows.


def parse(spec: str) -> list[tuple[str, str, str]]:
  """[(A, op, B)] of ``spec`` ('A > B; C ~ D')."""
  out = []
  for part in [p.strip() for p in (spec or "").split(";") if p.strip()]:
    for op in (">", "~"):
      if op in part:
        a, _, b = part.partition(op)
        if a.strip() and b.strip():
          out.append((a.strip(), op, b.strip()))
          break
    else:
      raise ConfigError(f"bad sweep.claims entry {part!r}: expected 'A > B' or 'A ~ B'")
  return out


def verdict(op: str, diff: float, half: float | None) -> str:
  """The verdict on ``diff`` (points) ± ``half`` (None: one seed) for the claim ``op``."""
  if half is None:
    return "not resolved (1 seed)"
  low, high = diff - half, diff + half
  if op == ">":
    return "holds" if low > 0 else ("does not hold" if high <= 0 else "not resolved")
  if -EQUAL_WITHIN <= low and high <= EQUAL_WITHIN:
    return "holds"
  return "does not hold" if (low > EQUAL_WITHIN or high < -EQUAL_WITHIN) else "not resolved"


def evaluate(spec: str, table: list[dict]) -> list[dict]:
  """One row per (claim, downstream set) of the sweep's ``table`` (rows with ``cell``)."""
  rows = []
  by_cell = {(r["cell"], r["dataset"]): r for r in table}
  datasets = list(dict.fromkeys(r["dataset"] for r in table))
  for a, op, b in parse(spec):
    for ds in datasets:
      ra, rb = by_cell.get((a, ds)), by_cell.get((b, ds))
      if ra is None or rb is None:
        missing = a if ra is None else b
        raise ConfigError(f"sweep.claims names the cell {missing!r}, which is not in the table "
                          f"(cells: {sorted({r['cell'] for r in table})})")
      if ra["sa"] is None or rb["sa"] is None:
        continue
      diff = 100 * (ra["sa"] - rb["sa"])
      half = None
      if ra.get("sa_std") is not None and rb.get("sa_std") is not None:
        half = 200 * math.sqrt(ra["sa_std"] ** 2 / ra["seeds"] + rb["sa_std"] ** 2 / rb["seeds"])
      rows.append({"claim": f"{a} {op} {b}", "dataset": ds, "diff": diff, "half": half,
                   "verdict": verdict(op, diff, half)})
  return rows


def markdown(rows: list[dict]) -> str:
  """The claims' table (empty when there are none)."""
  if not rows:
    return ""
  lines = ["| claim (SA) | Downstream | A − B (pts) | ± 2·SE | verdict |", "|---|---|---|---|---|"]
  for r in rows:
    half = "" if r["half"] is None else f"{r['half']:.2f}"
    lines.append(f"| {r['claim']} | {r['dataset']} | {r['diff']:+.2f} | {half} | {r['verdict']} |")
  return "\n".join(lines) + "\n"
