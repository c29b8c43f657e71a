"""Table XI, row 2: OpenAI's CLIP image encoder (ResNet-50 variant) as the target, 1024-d.

Weights: a non-JIT state dict of CLIP RN50 (clip.load("RN50", jit=False)[0].state_dict(),
saved with torch.save; the whole model's or its 'visual.' tower's, both are found), or
open_clip's RN50 'openai' weights; TorchScript archives are refused with how to convert.
CLIP's preprocessing: bicubic resize to 224, centre crop, CLIP's mean and std.
  python -m stolen_jax.main --config=configs/realworld/clip_rn50.py \\
      --config.steal.target=import:clip_rn50:/weights/RN50.pt \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/cifar10.npz,npz:DIR/mnist.npz
The paper's row (STL10 surrogate at 224 px): SA/TA >= 0.93. A ViT image tower instead:
import:clip_vit_b16:PATH (512-d), DINO: import:dino_vit_b16:PATH (768-d class token).

Attacker: the real-target recipe the cost-frontier study chose against EfficientNet-Lite0
(defaults.REAL_TARGET_RECIPE: ResNet-18 x1/2 at 32 px mapped linearly to CLIP's 1024-d, Adam
1e-3, 30 epochs of 64, l2-normalised answers; docs/results/realworld.md) with 2,500 queries
(--config.steal.surrogate_size). What it costs, by XLA's FLOP count (bench/realworld_cost.py):
the answers 11.3 GFLOP per query (28 TFLOP for 2,500), the steal 94 GFLOP per step x 1,170
steps = 110 TFLOP — about 2 s of an H200 at the rate our ResNet-18 steal step reaches there
(62 TFLOP/s, bench/RESULTS.md; compilation, ~20 s, dominates a GPU run) and ~19 min of
training on a 2-core CPU. Scale the steal with the queries (steps = queries / 64 x epochs).
"""

from stolen_jax import defaults


def get_config():
  return defaults.realworld_config("import:clip_rn50:WEIGHTS.pt")
