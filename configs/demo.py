"""The whole attack on embedded data (no download), sized for a laptop CPU.

Run:
  python -m stolen_jax.main --config=configs/demo.py
What it does (workdir/demo/): pre-trains a SimCLR target (ResNet-18, width 1/8) on 4,096
procedurally drawn ``shapes``; an attacker with 2,048 ``scenes`` images (cluttered texture
scenes: another distribution, as ImageNet is for a CIFAR-10 target) queries it once per
image and steals a ResNet-18 (width 1/8) with the paper's loss (ℓ2, λ=20,
flip+jitter+grayscale) for 20 epochs; MLP probes on the MNIST-like ``glyphs`` and on the
5-class ``textures`` give TA and SA.
Expected on 2 CPU cores (about 3–4 minutes): SA/TA ≥ 0.9 on both sets for every seed
measured (docs/results/demo_seeds.md: mean ± std over 3 seeds, the machine named; the last
digits depend on the CPU's float rounding). A rerun restores every stage (0 new queries)
and prints the table in seconds.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.demo_config()
  # 2,048 queries for 20 epochs rather than 512 for 80: the same steps (the same CPU time),
  # and the claim holds for every seed measured (512 queries: SA/TA 0.81–1.20 across 3
  # seeds, 2 of 3 below 0.9 on one set; 1,024: lowest 0.896). The defense demos and the
  # paper configs' demo scale keep demo_config()'s 512 queries (their docs were measured so).
  config.steal.surrogate_size, config.steal.epochs = 2048, 20
  return config
