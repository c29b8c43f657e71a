"""``answer_watermark``: did the suspect learn from answers the provider watermarked
(``defense.name=answer_watermark``, ``defenses.answer_watermark``)?

The verifier tints public images toward the secret trigger colour c (trigger inputs) and
toward −c (controls), and measures how much closer to the secret
direction t the suspect's answers move: s(t) = mean_i [cos(f(trigger_i), t) −
cos(f(control_i), t)]. Its null:
the same statistic for ``permutations`` decoy directions drawn as t is drawn (uniform on the
sphere). For a suspect that never saw the watermarked answers, t is one more such draw,
independent of its answers, so p = (1 + #{decoys ≥ s(t)}) / (1 + K) is exact. Before the
suspect is judged, the victim's own watermarked answers are tested with the same key: a key
that does not show there is not the provider's key (one clear error).
"""

import numpy as np

from stolen_jax.defenses import answer_watermark as mark
from stolen_jax.errors import ConfigError
from stolen_jax.verify.base import Context, Method, Outcome, decoy_p_value, unit

MIN_SAMPLES = 20


def applies(cfg, defense, victim_meta, data=None):
  if defense is None or defense.name != "answer_watermark":
    return ("the provider's answers carried no watermark (set defense.name=answer_watermark "
            "and its key, defense.watermark.seed, as the provider served them)")
  return None


def _inputs(cfg, defense, public):
  s = mark.settings_of(defense)
  images = public[:int(cfg.watermark_samples)]
  c = images.shape[-1]
  colour, tint = mark.trigger(s["seed"], c), float(cfg.watermark_tint)
  return mark.stamp(images, colour, tint), mark.stamp(images, -colour, tint)


def suspect_sets(cfg, data, defense, shared_space: bool = True) -> dict:
  trigger, control = _inputs(cfg, defense, data["public"])
  return {"wm_trigger": trigger, "wm_control": control}


def shift_statistics(trigger_answers, control_answers, directions) -> np.ndarray:
  """s(t) for each row t of ``directions``: the mean move toward t from control to trigger."""
  delta = (unit(trigger_answers) - unit(control_answers)).mean(axis=0)
  return unit(directions) @ delta


def decoys(rng, k: int, d: int) -> np.ndarray:
  """K directions drawn as the secret one is (isotropic Gaussian, normalised)."""
  return rng.normal(size=(k, d))


def test_answers(trigger_answers, control_answers, direction, rng, k: int):
  """(statistic, p-value, effect size) of the shift toward ``direction`` vs K decoys."""
  observed = float(shift_statistics(trigger_answers, control_answers, direction[None])[0])
  null = shift_statistics(trigger_answers, control_answers,
                          decoys(rng, k, len(direction)))
  return observed, decoy_p_value(observed, null), float(
      (observed - null.mean()) / max(null.std(), 1e-12))


def check_key(ctx: Context) -> dict:
  """The victim's own watermarked answers must carry the watermark under this key."""
  s = mark.settings_of(ctx.defense)
  trig, ctrl = ctx.sets["wm_trigger"], ctx.sets["wm_control"]
  own_t = mark.watermark(ctx.victim(trig), trig, s)
  own_c = mark.watermark(ctx.victim(ctrl), ctrl, s)
  direction = mark.target_direction(s["seed"], own_t.shape[1])
  stat, p, _ = test_answers(own_t, own_c, direction, ctx.rng, int(ctx.cfg.permutations))
  if p > float(ctx.cfg.alpha):
    raise ConfigError(
        f"the watermark key defense.watermark.seed={s['seed']} does not show in the victim's "
        f"own watermarked answers (shift {stat:.4f}, p = {p:.3g}): it is not the key these "
        "answers were served with, or verify.watermark_tint is too weak to trigger it")
  return {"victim_shift": stat, "victim_p": p}


def test(ctx: Context) -> Outcome:
  s = mark.settings_of(ctx.defense)
  own = check_key(ctx)
  trig, ctrl = ctx.answers["wm_trigger"], ctx.answers["wm_control"]
  direction = mark.target_direction(s["seed"], trig.shape[1])
  stat, p, effect = test_answers(trig, ctrl, direction, ctx.rng, int(ctx.cfg.permutations))
  return Outcome("answer_watermark", stat, p, effect, victim_samples=len(trig),
                 suspect_queries=len(trig) + len(ctrl),
                 test=f"decoy-direction test ({int(ctx.cfg.permutations)} decoys) of the shift "
                      "toward the secret direction, trigger vs control inputs",
                 extra=own)


def samples(cfg, data) -> int:
  """Public images stamped as trigger inputs (and as many controls)."""
  return min(int(cfg.watermark_samples), len(data["public"]))


METHOD = Method("answer_watermark", "EmbMarker (Peng et al., ACL 2023), for image encoders",
                applies, suspect_sets, test, samples=samples, min_samples=MIN_SAMPLES)
