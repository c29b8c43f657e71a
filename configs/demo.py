"""The whole attack on embedded data (no download), sized for a laptop CPU.

Run:
  python -m stolen_jax.main --config=configs/demo.py
What it does (workdir/demo/): pre-trains a SimCLR target (ResNet-18, width 1/8) on 2,048
procedurally drawn ``shapes``; an attacker with 512 ``scenes`` images (cluttered texture
scenes: another distribution, as ImageNet is for a CIFAR-10 target) queries it once per
image and steals a ResNet-18 (width 1/8) with the paper's loss (ℓ2, λ=20,
flip+jitter+grayscale); MLP probes on the MNIST-like ``glyphs`` and on ``shapes`` give TA and SA.
Expected on 2 CPU cores: see the README's Quick start (figures of a measured run).
A rerun restores every stage (0 new queries) and prints the table in seconds.
"""

from stolen_jax import defaults


def get_config():
  return defaults.demo_config()
