"""Table IV: the surrogate set's distribution — a subset of the pre-training set, the same
distribution (its test split), or a different one (the default: ImageNet for CIFAR-10).

Run: python -m stolen_jax.main --config=configs/paper/table4_surrogate_distribution.py:demo
At ``cpu``/``paper`` scale the axes name TFDS datasets; with files, override them, e.g.
  --config.sweep.axes="steal.surrogate=npz:DIR/cifar10.npz,npz:DIR/cifar10.npz,npz:DIR/tinyimagenet32.npz; steal.surrogate_split=train,test,train"
Paper (Table IV, CIFAR-10 target, GTSRB SA): 78.81 (subset), 78.84 (same distribution),
79.43 (different): the attacker need not know the pre-training distribution.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  if scale == "demo":
    config.sweep.axes = ("steal.surrogate=embedded:shapes,embedded:shapes,embedded:scenes; "
                         "steal.surrogate_split=train,test,train")
  else:
    config.sweep.axes = ("steal.surrogate=tfds:cifar10,tfds:cifar10,tfds:imagenet_resized/32x32; "
                         "steal.surrogate_split=train,test,train")
  return config
