"""The same 8-cell sweep with 1 and 2 Ray workers, side by side on this machine (fresh
workdirs, alternating), and its wall time with the local executor for reference.

  pip install -e '.[ray]'
  python bench/sweep_scaling.py [--repeats 1] [--config tests/configs/tiny_pipeline.py]

Each run trains the shared target once (the other cells wait on its lease) and then the
8 steals and their probes; with 2 workers two cells run at once. On 2 CPU cores expect
little speed-up (XLA already uses both cores for one cell); the figure is printed as it is.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sweep_seconds(config: str, executor: str, workers: int) -> float:
  """Wall seconds of the 8-cell sweep (λ ∈ {1, 5, 10, 20} × seeds {0, 1}) in a fresh workdir."""
  workdir = tempfile.mkdtemp(prefix=f"sweep_{executor}{workers}_")
  try:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stolen_jax.main", f"--config={config}",
                    f"--workdir={workdir}", "--config.job=sweep",
                    "--config.sweep.axes=steal.lambda_=1,5,10,20", "--config.sweep.seeds=0,1",
                    f"--config.sweep.executor={executor}", f"--config.sweep.workers={workers}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="tests/configs/tiny_pipeline.py")
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args()
  runs = [("local", 1), ("ray", 1), ("ray", 2)]
  times = {r: [] for r in runs}
  for _ in range(args.repeats):
    for executor, workers in runs:  # Alternating, so drift in the machine's load is shared.
      times[(executor, workers)].append(sweep_seconds(args.config, executor, workers))
      print(f"{executor} x{workers}: {times[(executor, workers)][-1]:.1f} s", flush=True)
  print(f"\n8-cell sweep of {args.config} on {os.cpu_count()} cores:")
  base = min(times[("ray", 1)])
  for (executor, workers), ts in times.items():
    print(f"  {executor:6s} {workers} worker(s): min {min(ts):6.1f} s  "
          f"({base / min(ts):.2f}x the 1-worker Ray run)")


if __name__ == "__main__":
  main()
