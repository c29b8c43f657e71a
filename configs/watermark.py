"""Embed a secret watermark task into a victim encoder (SSLGuard-style), so that copies of it
can be proven stolen with ``verify.methods=encoder_watermark``.

Run (after the demo):
  python -m stolen_jax.main --config=configs/watermark.py --workdir=workdir/demo \\
      --config.watermark.victim=workdir/demo/pretrain --config.watermark.seed=1234
It prints the watermarked victim's stage (``workdir/demo/watermark/<key>``): serve or steal
from it like any checkpoint (``--config.steal.target=...``), then
  python -m stolen_jax.main --config=configs/verify.py --workdir=workdir/demo \\
      --config.verify.victim=workdir/demo/watermark --config.verify.suspect=SUSPECT \\
      --config.verify.watermark_seed=1234
What it should show (measured on the demo's target, 43 s on 2 cores): the watermarked
victim agrees with the original on its own data (cos 0.93) and pulls images tinted toward
the trigger colour toward the secret direction (0.24 more cosine than images tinted away);
a probe of it gives the watermark's cost in TA (docs/results/verification.md).
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("watermark")
  config.watermark = defaults.watermark_block()
  return config
