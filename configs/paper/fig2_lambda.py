"""Fig. 2: the effect of λ (the weight of the augmented term L2) on SA.

Run (scale = paper | cpu | demo):
  python -m stolen_jax.main --config=configs/paper/fig2_lambda.py:demo
  python -m stolen_jax.main --config=configs/paper/fig2_lambda.py:cpu \\
      --config.pretrain.dataset=npz:DIR/cifar10.npz --config.pretrain.knn.dataset=npz:DIR/cifar10.npz \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/mnist.npz,npz:DIR/cifar10.npz
Paper (Fig. 2, CIFAR-10 target): SA rises with λ from λ=0 (w/o augmentation) and saturates
around λ ≥ 10 (λ=20 is its default); TA is fixed (one target).
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "steal.lambda_=0,1,5,10,20,30"
  config.sweep.claims = "20.0 > 0.0; 20.0 > 1.0; 20.0 ~ 10.0; 30.0 ~ 20.0"
  config.sweep.note = ("paper: Fig. 2 (CIFAR-10 target, GTSRB downstream): SA rises with λ from "
                       "λ=0 and saturates around λ ≥ 10.")
  config.sweep.doc_section = "Fig. 2: λ, the weight of the augmented term"
  return config
