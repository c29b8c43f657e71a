"""Table IX: one parameter at a time — the target's epochs and learning rate, the steal's
epochs, learning rate and batch size, the probe's epochs, learning rate and hidden sizes —
the others at the scale's defaults. Epoch counts are multiples (0.5x, 1x, 1.5x or 0.1x, 1x,
2x) of the scale's own defaults, so ``demo`` and ``cpu`` stay affordable.

Run: python -m stolen_jax.main --config=configs/paper/table9_parameters.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table IX, CIFAR-10, GTSRB): the attack stays effective over a wide range; the steal's
epochs matter most (SA 51.11 at 10 epochs, 79.43 at 100, 81.74 at 200).
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  p, s, q = config.pretrain, config.steal, config.probe
  rows = []  # (parameter, value) one at a time; the default row repeats (computed once).
  rows += [("pretrain.epochs", max(1, round(p.epochs * f))) for f in (0.5, 1.0, 1.5)]
  rows += [("pretrain.lr", v) for v in (1e-3, 5e-4, 1e-4)]
  rows += [("steal.epochs", max(1, round(s.epochs * f))) for f in (0.1, 1.0, 2.0)]
  rows += [("steal.lr", v) for v in (1e-3, 5e-4, 1e-4)]
  rows += [("steal.batch_size", v) for v in (32, 64, 128)]
  rows += [("probe.epochs", max(1, round(q.epochs * f))) for f in (0.2, 0.6, 1.0)]
  rows += [("probe.lr", v) for v in (1e-3, 5e-4, 1e-4)]
  rows += [("probe.hidden", v) for v in ("(128,64)", "(256,128)", "(512,256)")]
  keys = list(dict.fromkeys(k for k, _ in rows))
  base = {"pretrain.epochs": p.epochs, "pretrain.lr": p.lr, "steal.epochs": s.epochs,
          "steal.lr": s.lr, "steal.batch_size": s.batch_size, "probe.epochs": q.epochs,
          "probe.lr": q.lr, "probe.hidden": "(%d,%d)" % tuple(q.hidden)}
  columns = {k: [str(v if k == key else base[k]) for key, v in rows] for k in keys}
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  config.sweep.axes = "; ".join(f"{k}={'|'.join(vs)}" for k, vs in columns.items())
  return config
