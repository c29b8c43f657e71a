"""Which optimiser regime steals best: the ℓ2 StolenEncoder under our default (Adam 1e-3, loss
averaged over the batch), the official code's (SGD 1e-3, momentum 0.9, weight decay 5e-4, ℓ2
summed over the batch), SGD on the averaged loss with a batch-size× (64×) learning rate, and
Adam with a cosine schedule; three seeds each.

Run (scale = paper | cpu | demo), in the workdir of table6_regimes.py to share its cells:
  python -m stolen_jax.main --config=configs/paper/steal_regime.py:cpu --workdir=workdir/paper_cpu \\
      (the datasets as in table6_regimes.py) --config.sweep.doc=docs/results/paper_cpu.md
What it decides: the default of ``steal_block()`` (README: "where the paper's text and its code
differ") — the regime with the highest SA, given the seeds' spread.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  config.sweep.axes = ("steal.optimizer=adam,sgd,sgd,adam; "
                       "steal.reduction=mean,official,mean,mean; "
                       "steal.lr=1e-3,1e-3,0.064,1e-3; "
                       "steal.weight_decay=0,5e-4,5e-4,0; "
                       "steal.schedule=constant,constant,constant,cosine")
  config.sweep.seeds = (0, 1, 2)
  default = "adam,mean,0.001,0.0,constant"
  config.sweep.claims = "; ".join(f"{other} > {default}" for other in (
      "sgd,official,0.001,0.0005,constant", "sgd,mean,0.064,0.0005,constant",
      "adam,mean,0.001,0.0,cosine"))
  config.sweep.doc_section = "The ℓ2 steal's optimiser regime (3 seeds)"
  return config
