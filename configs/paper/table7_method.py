"""Table VII: the target's contrastive learning algorithm (MoCo vs SimCLR).

Run: python -m stolen_jax.main --config=configs/paper/table7_method.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table VII, CIFAR-10, GTSRB TA/SA): MoCo 78.92/78.41, SimCLR 80.67/79.43: the attack
works for both.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "pretrain.method=moco,simclr"
  # The targets differ (their own TA): the claim is that the attack keeps as much of each.
  config.sweep.claims = "SA/TA: moco ~ simclr"
  config.sweep.paper = "moco:78.92/78.41; simclr:80.67/79.43"
  config.sweep.note = "paper: Table VII (CIFAR-10 target, GTSRB downstream)."
  config.sweep.doc_section = "Table VII: the target's method, MoCo vs SimCLR"
  return config
