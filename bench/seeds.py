"""A pipeline config's figures as they vary with the seed: each seed in its own workdir, mean ±
std per column, and whether a claim (SA/TA ≥ X% on every downstream set) holds for every seed.

  python bench/seeds.py --config configs/demo.py --seeds 0,1,2 --claim 90 \\
      --workdir workdir/demo_seeds --doc docs/results/demo_seeds.md

Each seed runs in its own workdir (<workdir>/seed<S>); rerunning restores each finished stage
whose settings are unchanged (seconds) and recomputes the rest, so an edited config is never
read back stale (a restored seed keeps the wall time measured when it ran). Flags after the
known ones go to every run (--config.probe.epochs=50). The doc names the machine's CPU: the
last digits depend on its float rounding.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = (("ta", "TA (%)"), ("sa", "SA (%)"), ("sa_over_ta", "SA/TA (%)"),
           ("cosine", "cos(f_t, f_s)"), ("agreement", "Agreement (%)"))


def cpu_name() -> str:
  """The CPU model (the rounding of the figures depends on it)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _read(path: str):
  """A results.json (None when there is none)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _figures(results):
  """What a restore reproduces exactly: a results.json's settings and rows."""
  return None if results is None else (results.get("settings"), results.get("rows"))


def run_seed(config: str, seed: int, workdir: str, extra: list) -> tuple[dict, float]:
  """(results.json, wall seconds) of ``config`` with ``seed`` in ``workdir``. The pipeline
  always runs: its keyed stages restore what the settings have not changed in seconds and
  recompute what they have, so an edited config never reads back a stale seed. The wall
  time is this run's, unless the run only restored the figures a timed run wrote before."""
  path = os.path.join(workdir, "results.json")
  wall_file = os.path.join(workdir, "wall_s.txt")
  before = _figures(_read(path))
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "stolen_jax.main", f"--config={config}",
                  f"--workdir={workdir}", f"--config.seed={seed}", *extra], cwd=ROOT,
                 check=True)
  wall = time.perf_counter() - t0
  results = _read(path)
  if before is not None and before == _figures(results) and os.path.exists(wall_file):
    wall = float(open(wall_file).read())  # A restore: the time of the run that computed it.
  else:
    with open(wall_file, "w") as f:
      f.write(f"{wall:.1f}\n")
  return results, wall


def table(per_seed: dict) -> list[str]:
  """Markdown lines: one row per (dataset, seed), then each dataset's mean ± std."""
  lines = ["| Downstream | seed | " + " | ".join(h for _, h in COLUMNS) + " |",
           "|---|---|" + "---|" * len(COLUMNS)]
  datasets = [r["dataset"] for r in next(iter(per_seed.values()))["rows"]]
  for name in datasets:
    rows = {s: next(r for r in res["rows"] if r["dataset"] == name) for s, res in per_seed.items()}
    for s, r in rows.items():
      lines.append(f"| {name} | {s} | " + " | ".join(f"{r[k]:g}" for k, _ in COLUMNS) + " |")
    stats = []
    for k, _ in COLUMNS:
      v = np.array([r[k] for r in rows.values()], float)
      stats.append(f"**{v.mean():.3g} ± {v.std(ddof=1) if len(v) > 1 else 0:.2g}**")
    lines.append(f"| **{name}** | mean ± std | " + " | ".join(stats) + " |")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--claim", type=float, default=None,
                      help="SA/TA (%%) claimed on every downstream set, checked per seed")
  parser.add_argument("--title", default=None)
  parser.add_argument("--workdir", default="workdir/demo_seeds")
  parser.add_argument("--doc", default=None, help="write the table to this markdown file")
  args, extra = parser.parse_known_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  per_seed, walls = {}, {}
  for s in seeds:
    per_seed[s], walls[s] = run_seed(args.config, s, os.path.join(args.workdir, f"seed{s}"),
                                     extra)
  lines = table(per_seed)
  worst = min(r["sa_over_ta"] for res in per_seed.values() for r in res["rows"])
  command = (f"python bench/seeds.py --config {args.config} --seeds {args.seeds}"
             + (f" --claim {args.claim:g}" if args.claim is not None else "")
             + (f" --title '{args.title}'" if args.title else "")
             + f" --workdir {args.workdir}" + (f" --doc {args.doc}" if args.doc else "")
             + "".join(f" {e}" for e in extra))
  if args.claim is None:
    verdict = f"Lowest SA/TA of any seed and set: {worst:.1f}%."
  elif worst >= args.claim:
    verdict = (f"The claim (SA/TA ≥ {args.claim:g}% on every set) holds for every seed "
               f"(lowest {worst:.1f}%).")
  else:
    verdict = (f"The claim (SA/TA ≥ {args.claim:g}% on every set) does NOT hold for every "
               f"seed (lowest {worst:.1f}%).")
  text = "\n".join([
      f"# {args.title or args.config + ' with several seeds'}", "",
      f"Written by `{command}` on {cpu_name()} ({os.cpu_count()} cores), "
      f"{time.strftime('%Y-%m-%d')}.", "",
      *lines, "",
      "Wall time per seed (the run that computed its figures): "
      + ", ".join(f"{walls[s]:.0f} s" for s in seeds) + ".",
      verdict,
      "The last digits depend on the CPU's float rounding (another CPU prints other figures "
      "within about the spread above).", ""])
  print(text)
  if args.doc:
    with open(args.doc, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
