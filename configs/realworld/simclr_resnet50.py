"""Table XI, row 1: Google's ImageNet SimCLR ResNet-50 (1x) as the target, 2048-d features.

Weights: SimCLR v1's TF checkpoints (github.com/google-research/simclr) converted to a
PyTorch state dict with torchvision's ResNet-50 names (e.g. the simclr-converter project's
resnet50-1x.pth); the model takes [0, 1] pixels, resized to 256 and centre-cropped to 224.
  python -m stolen_jax.main --config=configs/realworld/simclr_resnet50.py \\
      --config.steal.target=import:simclr_resnet50:/weights/resnet50-1x.pth \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/cifar10.npz,npz:DIR/mnist.npz
The paper's row (STL10 surrogate at 224 px, 13k queries): SA/TA >= 0.93 on its downstream
sets.

Attacker: the real-target recipe the cost-frontier study chose against EfficientNet-Lite0
(defaults.REAL_TARGET_RECIPE: ResNet-18 x1/2 at the surrogate's 32 px mapped linearly to the
2048-d features, Adam 1e-3, 30 epochs of 64, l2-normalised answers; docs/results/realworld.md)
with 2,500 queries (--config.steal.surrogate_size). What it costs, by XLA's FLOP count
(bench/realworld_cost.py): the answers 8.0 GFLOP per query (20 TFLOP for 2,500), the steal
94 GFLOP per step x 1,170 steps = 110 TFLOP — about 2 s of an H200 at the rate our ResNet-18
steal step reaches there (62 TFLOP/s, bench/RESULTS.md; compilation, ~20 s, dominates a GPU
run) and ~19 min of training on a 2-core CPU. The paper's 13k queries: 5.2x the steal.
"""

from stolen_jax import defaults


def get_config():
  return defaults.realworld_config("import:simclr_resnet50:WEIGHTS.pth")
