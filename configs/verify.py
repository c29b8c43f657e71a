"""Ownership verification: was ``verify.suspect`` stolen from ``verify.victim``?

Run (after the demo, ``python -m stolen_jax.main --config=configs/demo.py``):
  python -m stolen_jax.main --config=configs/verify.py --workdir=workdir/demo \\
      --config.verify.victim=workdir/demo/pretrain --config.verify.suspect=workdir/demo/steal
Both take any ``steal.target`` spec (a checkpoint or stage directory, import:NAME:PATH,
callable:MODULE:FUNCTION, http(s)://..., api:ADAPTER.json); the suspect is metered like a
target (``verify.suspect_budget``). A victim trained here records its private training data
(``verify.private=auto``); the public held-out set is that dataset's test split.

What it should show: per method the statistic, p-value, effect size, samples and queries,
then one line — ``verdict: stolen — p = 1.0e-04 ≤ α/2 = 0.005 (fidelity, 904 queries)`` for
the demo's stolen encoder (6 s on 2 cores), and ``verdict: not shown — …`` for an encoder
trained independently, e.g. the demo's target recipe with another seed (2 minutes):
  python -m stolen_jax.main --config=configs/demo.py --config.job=pretrain --config.seed=1 \
      --workdir=workdir/innocent
  python -m stolen_jax.main --config=configs/verify.py --workdir=workdir/demo \
      --config.verify.victim=workdir/demo/pretrain --config.verify.suspect=workdir/innocent/pretrain
Dataset inference
shows nothing against the demo's victim: it fits its 4,096 images no more closely than unseen
ones (docs/results/verification.md). With ``defense.name=answer_watermark`` (as the provider
served the answers, with its key ``defense.watermark.seed``) the answer watermark is tested too.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("verify")
  config.verify = defaults.verify_block()
  return config
