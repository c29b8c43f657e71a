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
  config.sweep.claims = "; ".join(
      f"{s},stolenencoder,20.0 {op} {s},{other}" for s in ("0.03", "0.05") for op, other in (
          (">", "stolenencoder,0.0"), ("~", "query_aug,20.0"), (">", "pretrain_encoder,20.0")))
  # The paper's SA (CIFAR-10 target, GTSRB downstream; its TA there is 80.67).
  config.sweep.paper = ("0.03,stolenencoder,20.0:80.67/77.97; 0.03,stolenencoder,0.0:80.67/44.47; "
                        "0.03,query_aug,20.0:80.67/76.71; 0.03,pretrain_encoder,20.0:80.67/66.42; "
                        "0.05,stolenencoder,20.0:80.67/79.43; 0.05,stolenencoder,0.0:80.67/51.50; "
                        "0.05,query_aug,20.0:80.67/78.91; 0.05,pretrain_encoder,20.0:80.67/71.40")
  config.sweep.note = ("paper: Table X (CIFAR-10 target, GTSRB downstream, 1,500/2,500 "
                       "queries; query-aug 151,500/252,500), the same for every downstream row.")
  config.sweep.doc_section = "Table X: StolenEncoder and its variants at 3% and 5%"
  return config
