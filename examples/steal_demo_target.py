"""Steal the demo's target from Python: pretrain it (or read it back), steal it with 512
queries, and probe both encoders on a downstream set.

  python examples/steal_demo_target.py                 # ~3 minutes on 2 CPU cores
  python examples/steal_demo_target.py --base tests/configs/tiny_pipeline.py \\
      --surrogate embedded:textures --budget 32        # seconds (the test suite runs this)

Each call is a job of the command line (same stages, keys and cache): a second run reads
everything back and pays nothing.
"""

import argparse

import stolen_jax as sj


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", default="demo", help="'demo', 'paper' or a config file")
  parser.add_argument("--workdir", default="workdir/example_demo")
  parser.add_argument("--surrogate", default="embedded:scenes")
  parser.add_argument("--budget", type=int, default=512)
  parser.add_argument("--downstream", default="embedded:glyphs")
  args = parser.parse_args(argv)

  target = sj.pretrain(base=args.base, workdir=args.workdir)
  stolen = sj.steal(target.encoder, args.surrogate, budget=args.budget, base=args.base,
                    workdir=args.workdir)
  print(stolen.table)
  print(f"paid {stolen.queries_paid} queries now, {stolen.queries} in all (${stolen.cost:.4f})")
  ta = sj.probe(target.encoder, args.downstream, base=args.base, workdir=args.workdir)
  sa = sj.probe(stolen.encoder, args.downstream, base=args.base, workdir=args.workdir)
  ta_acc, sa_acc = ta.rows[0]["accuracy (%)"], sa.rows[0]["accuracy (%)"]
  print(f"{args.downstream}: TA {ta_acc:.1f}%, SA {sa_acc:.1f}%, SA/TA {sa_acc / ta_acc:.2f}")


if __name__ == "__main__":
  main()
