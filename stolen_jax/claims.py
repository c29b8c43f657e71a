"""A paper's claims checked against a sweep's own table, with the seeds' spread.

``sweep.claims`` lists comparisons between cells, named by their axis values as in
``sweep.paper`` (``"l2,adam > cosine,adam; query_aug ~ stolenencoder"``): ``A > B`` claims A's
SA exceeds B's, ``A ~ B`` that they are about equal; an entry prefixed ``SA/TA:`` compares
SA/TA (%) instead — for cells with different targets, where the paper's claim is about how
much of each target the attack keeps, not about the targets' own accuracy. For every
downstream set the sweep writes the difference of the means (points), its 95% half-width
2·SE (SE = √(s_A²/n_A + s_B²/n_B) over the seeds) and a verdict: ``holds`` (A > B: the
interval above 0; A ~ B: the interval within ±2 points), ``does not hold`` (A > B: the
interval at or below 0; A ~ B: the interval outside ±2 points), ``not resolved`` otherwise
or with one seed (no spread to weigh the effect against).
"""

import math

from stolen_jax.errors import ConfigError

EQUAL_WITHIN = 2.0  # Points: the margin "about equal" allows.


METRICS = {"SA": ("sa", "sa_std"), "SA/TA": ("sa_over_ta", "sa_over_ta_std")}


def parse(spec: str) -> list[tuple[str, str, str, str]]:
  """[(metric, A, op, B)] of ``spec`` ('A > B; SA/TA: C ~ D'); the metric is SA unless an
  entry is prefixed ``SA/TA:``."""
  out = []
  for part in [p.strip() for p in (spec or "").split(";") if p.strip()]:
    metric, sep, rest = part.partition(":")
    if not sep or metric.strip().upper() not in METRICS:
      metric, rest = "SA", part
    for op in (">", "~"):
      if op in rest:
        a, _, b = rest.partition(op)
        if a.strip() and b.strip():
          out.append((metric.strip().upper(), a.strip(), op, b.strip()))
          break
    else:
      raise ConfigError(f"bad sweep.claims entry {part!r}: expected 'A > B' or 'A ~ B', "
                        "optionally prefixed 'SA/TA:'")
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
  for metric, a, op, b in parse(spec):
    key, std = METRICS[metric]
    for ds in datasets:
      ra, rb = by_cell.get((a, ds)), by_cell.get((b, ds))
      if ra is None or rb is None:
        missing = a if ra is None else b
        raise ConfigError(f"sweep.claims names the cell {missing!r}, which is not in the table "
                          f"(cells: {sorted({r['cell'] for r in table})})")
      if ra.get(key) is None or rb.get(key) is None:
        continue
      diff = 100 * (ra[key] - rb[key])
      half = None
      if ra.get(std) is not None and rb.get(std) is not None:
        half = 200 * math.sqrt(ra[std] ** 2 / ra["seeds"] + rb[std] ** 2 / rb["seeds"])
      claim = f"{a} {op} {b}" if metric == "SA" else f"{metric}: {a} {op} {b}"
      rows.append({"claim": claim, "dataset": ds, "diff": diff, "half": half,
                   "verdict": verdict(op, diff, half)})
  return rows


def markdown(rows: list[dict]) -> str:
  """The claims' table (empty when there are none)."""
  if not rows:
    return ""
  lines = ["| claim (SA unless named) | Downstream | A − B (pts) | ± 2·SE | verdict |",
           "|---|---|---|---|---|"]
  for r in rows:
    half = "" if r["half"] is None else f"{r['half']:.2f}"
    lines.append(f"| {r['claim']} | {r['dataset']} | {r['diff']:+.2f} | {half} | {r['verdict']} |")
  return "\n".join(lines) + "\n"
