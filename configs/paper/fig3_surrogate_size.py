"""Fig. 3: the effect of the surrogate set's size (a fraction of the target's pretraining set).

Run: python -m stolen_jax.main --config=configs/paper/fig3_surrogate_size.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Fig. 3): SA grows with the surrogate size and is close to TA from about 5%.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "steal.surrogate_size=0.01,0.02,0.05,0.1"
  config.sweep.claims = "0.1 > 0.01; 0.05 > 0.01"
  config.sweep.note = ("paper: Fig. 3 (CIFAR-10 target, GTSRB downstream): SA grows with the "
                       "surrogate size and is close to TA from about 5%.")
  config.sweep.doc_section = "Fig. 3: the surrogate set's size"
  return config
