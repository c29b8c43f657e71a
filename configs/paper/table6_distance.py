"""Table VI: the distance d (ℓ2, ℓ1, cosine), with the official code's feature normalisation
on and off. On normalised features ℓ2 and cosine are monotone in each other, so the paper's
ordering can only show on raw features.

Run: python -m stolen_jax.main --config=configs/paper/table6_distance.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table VI, CIFAR-10 target, GTSRB SA): ℓ2 ≥ ℓ1 > cosine.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "steal.distance=l2,l1,cosine; steal.normalize_features=true,false"
  # The paper's SA (CIFAR-10 target, GTSRB; TA 80.67); its text does not say whether the
  # features were normalised (its code normalises), so both rows carry its figure.
  config.sweep.paper = ("l2,True:80.67/79.43; l1,True:80.67/74.52; cosine,True:80.67/61.07; "
                        "l2,False:80.67/79.43; l1,False:80.67/74.52; cosine,False:80.67/61.07")
  config.sweep.note = "paper: Table VI (CIFAR-10 target, GTSRB downstream)."
  return config
