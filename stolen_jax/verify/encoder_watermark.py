"""``encoder_watermark``: does the suspect carry the watermark task embedded in the victim
(``job=watermark``, ``verify.embed``)?

The suspect is queried on the secret inputs only: public images tinted toward the secret
trigger colour, and the same images tinted away from it as controls. The statistic and its
exact null are the answer watermark's (the shift toward the secret direction t against
decoy directions). The key (``verify.watermark_seed``) must hash to what the victim's stage
recorded; the victim's own answers are tested first, so a victim whose watermark did not
take is reported as such rather than misread as innocence of the suspect.
"""

import numpy as np

from stolen_jax.defenses import answer_watermark as mark
from stolen_jax.errors import ConfigError
from stolen_jax.verify.answer_watermark import MIN_SAMPLES, samples, test_answers
from stolen_jax.verify.base import Context, Method, Outcome


def _recorded(victim_meta) -> dict | None:
  return victim_meta.get("watermark") if isinstance(victim_meta.get("watermark"), dict) else None


def applies(cfg, defense, victim_meta, data=None):
  if _recorded(victim_meta) is None:
    return ("the victim carries no encoder watermark (embed one with job=watermark, "
            "configs/watermark.py, and verify the watermarked stage)")
  if cfg.watermark_seed is None:
    return "needs the watermark's key, verify.watermark_seed"
  return None


def check_key(cfg, victim_meta) -> dict:
  """The recorded watermark settings, once the key's hash matches the victim's."""
  from stolen_jax.verify.embed import key_hash
  recorded = _recorded(victim_meta)
  if key_hash(cfg.watermark_seed) != recorded.get("key"):
    raise ConfigError(f"verify.watermark_seed={cfg.watermark_seed} is not the key of the "
                      "victim's watermark (its hash differs from the one the watermark stage "
                      "recorded)")
  return recorded


def _inputs(cfg, victim_meta, public):
  check_key(cfg, victim_meta)
  images = public[:int(cfg.watermark_samples)]
  c = images.shape[-1]
  colour, tint = mark.trigger(int(cfg.watermark_seed), c), float(cfg.watermark_tint)
  return mark.stamp(images, colour, tint), mark.stamp(images, -colour, tint)


def suspect_sets(cfg, data, defense, shared_space: bool = True) -> dict:
  trigger, control = _inputs(cfg, data["victim_meta"], data["public"])
  return {"ew_trigger": trigger, "ew_control": control}


def test(ctx: Context) -> Outcome:
  trig_images, ctrl_images = ctx.sets["ew_trigger"], ctx.sets["ew_control"]
  seed, k = int(ctx.cfg.watermark_seed), int(ctx.cfg.permutations)
  own_t, own_c = ctx.victim(trig_images), ctx.victim(ctrl_images)
  direction = mark.target_direction(seed, own_t.shape[1])
  own_stat, own_p, _ = test_answers(own_t, own_c, direction, ctx.rng, k)
  trig, ctrl = ctx.answers["ew_trigger"], ctx.answers["ew_control"]
  stat, p, effect = test_answers(trig, ctrl, direction, ctx.rng, k)
  note = "" if own_p <= float(ctx.cfg.alpha) else (
      f"the victim itself does not show its watermark (p = {own_p:.3g}): it did not take")
  return Outcome("encoder_watermark", stat, p, effect, victim_samples=len(trig_images),
                 suspect_queries=len(trig) + len(ctrl),
                 test=f"decoy-direction test ({k} decoys) of the shift toward the secret "
                      "direction on the secret inputs",
                 note=note, extra={"victim_shift": own_stat, "victim_p": own_p})


METHOD = Method("encoder_watermark", "SSLGuard (Cong et al., CCS 2022)-style, embedded task",
                applies, suspect_sets, test, samples=samples, min_samples=MIN_SAMPLES)
