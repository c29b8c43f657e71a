"""The verification columns of a sweep's table and its innocents' false-positive table."""

import numpy as np

LEVELS = (0.01, 0.05)


def methods_of(table: list[dict]) -> list[str]:
  """The methods any cell was verified with, in a stable order."""
  seen = []
  for r in table:
    for v in r.get("verification") or []:
      for m in v["stolen"]:
        if m not in seen:
          seen.append(m)
  return seen


def cell_text(row: dict, method: str) -> str:
  """'3e-04 (2/2)': the median p-value over the seeds and how many seeds were flagged at
  α = 0.01 (the stolen encoder's TPR at that level)."""
  ps = [v["stolen"][method] for v in row.get("verification") or [] if method in v["stolen"]]
  if not ps:
    return ""
  flagged = sum(p <= LEVELS[0] for p in ps)
  return f"{np.median(ps):.1g} ({flagged}/{len(ps)})"


def innocents_markdown(table: list[dict]) -> str:
  """Per innocent and method, how often it was called stolen at α = 0.01 and 0.05 over every
  cell (victim answers under each defense) and seed: the measured false-positive rates."""
  seen, counts = set(), {}
  for r in table:
    for v in r.get("verification") or []:
      for name, ps in v["innocents"].items():
        for m, p in ps.items():
          # One verification appears in every cell that shares its victim, suspect, data
          # and key (the same p-value to the last bit): counted once.
          if (name, m, p) not in seen:
            seen.add((name, m, p))
            counts.setdefault((name, m), []).append(p)
  if not counts:
    return ""
  lines = ["| innocent encoder | method | verifications | FPR at α=0.01 | FPR at α=0.05 | "
           "smallest p |", "|---|---|---|---|---|---|"]
  for (name, m), ps in sorted(counts.items()):
    ps = np.asarray(ps)
    lines.append(f"| {name} | {m} | {len(ps)} | {np.mean(ps <= LEVELS[0]):.2f} | "
                 f"{np.mean(ps <= LEVELS[1]):.2f} | {ps.min():.2g} |")
  return "\n".join(lines) + "\n"
