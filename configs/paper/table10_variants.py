"""Table X: StolenEncoder vs its variants at two surrogate sizes (3% and 5%): w/o
augmentation (λ=0), query-aug (pays (e+1)·|D| queries for f_t(A(x)) every epoch) and the
pre-training-encoder baseline (SimCLR on the surrogate set, no query).

Run: python -m stolen_jax.main --config=configs/paper/table10_variants.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table X): w/o-aug < StolenEncoder ≈ query-aug (which pays (e+1)·|D| queries); the
pre-training encoder is far below at the same data.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  # λ=0 with variant=stolenencoder is w/o-aug; zip pairs each variant with its λ.
  config.sweep.axes = ("steal.surrogate_size=0.03,0.03,0.03,0.03,0.05,0.05,0.05,0.05; "
                       "steal.variant=stolenencoder,stolenencoder,query_aug,pretrain_encoder,"
                       "stolenencoder,stolenencoder,query_aug,pretrain_encoder; "
                       "steal.lambda_=20,0,20,20,20,0,20,20")
  config.sweep.mode = "zip"
  return config
