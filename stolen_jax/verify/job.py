"""The verification stage: open victim and suspect, pay for the suspect's answers once per
image set, run the methods, combine their p-values, write ``verify/<key>/summary.json``."""

import time

import numpy as np

from stolen_jax import console, defenses, parallel, stages
from stolen_jax.eaas.rows import fingerprint
from stolen_jax.errors import ConfigError
from stolen_jax.verify import REGISTRY, get, parse_methods
from stolen_jax.verify.base import Context, Outcome
from stolen_jax.verify.parties import load_sets, open_party

def _dimension(party, probe) -> int:
  """The party's feature dimension: from its meta, or (a black box) from two paid answers."""
  if party.meta.get("feature_dim"):
    return int(party.meta["feature_dim"])
  return int(party.features(probe).shape[1])


def validate(config) -> None:
  """One ConfigError for a bad ``verify`` setting, before anything is opened or paid."""
  cfg = config.get("verify")
  if cfg is None:
    raise ConfigError("job 'verify' needs a config.verify block (configs/verify.py)")
  parse_methods(cfg.methods)
  if not 0 < float(cfg.alpha) < 1:
    raise ConfigError(f"verify.alpha={cfg.alpha} must be in (0, 1)")
  for key in ("num_samples", "watermark_samples", "permutations"):
    if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
      raise ConfigError(f"verify.{key}={cfg[key]!r} must be an integer >= 1")
  if cfg.suspect_budget is not None and (not isinstance(cfg.suspect_budget, int)
                                         or cfg.suspect_budget < 0):
    raise ConfigError(f"verify.suspect_budget={cfg.suspect_budget!r} must be an integer >= 0")
  if not 0 < float(cfg.watermark_tint) <= 1:
    raise ConfigError(f"verify.watermark_tint={cfg.watermark_tint} must be in (0, 1]")
  if float(cfg.alpha) * (int(cfg.permutations) + 1) < 1:
    raise ConfigError(f"verify.permutations={cfg.permutations} is too few for α = {cfg.alpha}: "
                      f"a decoy test's smallest p-value is 1/(permutations+1); use at least "
                      f"{int(np.ceil(1 / float(cfg.alpha))) * 10}")
  defenses.validate(config.get("defense"))


def _choose(cfg, defense, victim, data, shared) -> tuple[list, dict]:
  """(methods to run, {method: why it does not run})."""
  names = parse_methods(cfg.methods)
  explicit = names != ["auto"]
  names = names if explicit else list(REGISTRY)
  run, skipped = [], {}
  for name in names:
    m = get(name)
    why = m.applies(cfg, defense, victim.meta, data)
    if why is None and m.shared_space and not shared:
      why = (f"needs the suspect's features in the victim's space (suspect "
             f"{data['dims'][1]}-d, victim {data['dims'][0]}-d)")
    if why is None:
      have = m.samples(cfg, data)
      if have < m.min_samples:
        why = (f"needs at least {m.min_samples} samples per set for its test; it would have "
               f"{have} (verify.num_samples / watermark_samples, or a larger private/public set)")
        if explicit:
          raise ConfigError(f"verify: {name} {why}")
        skipped[name] = why
        continue
      run.append(m)
    elif explicit:
      raise ConfigError(f"verify method {name!r} cannot run: {why}")
    else:
      skipped[name] = why
  if not run:
    raise ConfigError(f"no verification method applies: {skipped}")
  return run, skipped


def combine(outcomes: list[Outcome], alpha: float) -> dict:
  """Holm's step-down correction over the methods that ran: 'stolen' when the smallest
  p-value is at most α/m (the family-wise error over m tests stays ≤ α)."""
  ran = sorted((o for o in outcomes if o.p_value is not None), key=lambda o: o.p_value)
  m = len(ran)
  rejected = []
  for i, o in enumerate(ran):
    if o.p_value <= alpha / (m - i):
      rejected.append(o.method)
    else:
      break
  best = ran[0]
  return {"stolen": bool(rejected), "methods_rejecting": rejected, "best": best.method,
          "p_value": best.p_value, "threshold": alpha / m, "num_methods": m}


def _p(p: float) -> str:
  return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def verdict_line(combined: dict, outcomes: list[Outcome], alpha: float) -> str:
  """The one line scripts read: 'verdict: stolen — p = … < α/m = … (method, N queries)'."""
  best = next(o for o in outcomes if o.method == combined["best"])
  m = combined["num_methods"]
  bound = f"α = {alpha:g}" if m == 1 else f"α/{m} = {combined['threshold']:.3g}"
  where = f"({best.method.replace('_', ' ')}, {best.suspect_queries} queries)"
  if combined["stolen"]:
    return f"verdict: stolen — p = {_p(best.p_value)} ≤ {bound} {where}"
  return f"verdict: not shown — smallest p = {_p(best.p_value)} > {bound} {where}"


def method_line(o: Outcome, alpha: float) -> str:
  """One method's result: its statistic, p-value and verdict at α."""
  if o.p_value is None:
    return f"  {o.method}: not run — {o.note}"
  word = "stolen" if o.p_value <= alpha else "not shown"
  return (f"  {o.method}: {word} — p = {_p(o.p_value)} (statistic {o.statistic:.4g}, effect "
          f"{o.effect_size:.3g}; {o.victim_samples} victim samples, {o.suspect_queries} "
          f"suspect queries)")


def _settings(config, data, methods) -> dict:
  cfg = config.verify
  s = {k: stages.plain(cfg[k]) for k in (
      "alpha", "num_samples", "watermark_samples", "watermark_tint", "permutations", "seed",
      "private", "private_split", "private_num_examples", "public", "public_split")}
  s["methods"] = [m.name for m in methods]
  s["dataset_inference"] = stages.plain(cfg.dataset_inference)
  if any(m.name == "answer_watermark" for m in methods):
    s["defense"] = defenses.settings(config.defense)
  if any(m.name == "encoder_watermark" for m in methods):
    s["watermark_seed"] = int(cfg.watermark_seed)
  return s


def run(config, workdir: str) -> dict:
  """Runs the verification of ``verify.suspect`` against ``verify.victim``."""
  validate(config)
  cfg = config.verify
  mesh = parallel.make_mesh()
  victim = open_party(cfg.victim, "verify.victim", cfg, mesh)
  suspect = open_party(cfg.suspect, "verify.suspect", cfg, mesh, budget=cfg.suspect_budget)
  sizes = (victim.meta.get("image_size"), suspect.meta.get("image_size"))
  if None not in sizes and sizes[0] != sizes[1]:
    raise ConfigError(f"the victim takes {sizes[0]}-px images and the suspect {sizes[1]}-px: "
                      "the methods show both the same images, so they must share an input size")
  data = load_sets(cfg, victim)
  probe = data["public"][:2]
  dims = (_dimension(victim, probe), _dimension(suspect, probe))
  data["dims"] = dims
  data["victim_meta"] = victim.meta
  shared = dims[0] == dims[1]
  defense = config.get("defense")
  methods, skipped = _choose(cfg, defense, victim, data, shared)
  asked = {}  # What the suspect answers (each set once, whichever methods share it).
  for m in methods:
    asked.update(m.suspect_sets(cfg, data, defense, shared))
  sets = dict(asked)
  for m in methods:
    sets.update(m.victim_sets(cfg, data, shared))
  need = sum(len(v) for v in asked.values())
  used = int(suspect.service.queries_used)
  if cfg.suspect_budget is not None and need + used > cfg.suspect_budget:
    raise ConfigError(f"verify: the methods need {need} suspect queries "
                      f"({', '.join(f'{k} {len(v)}' for k, v in asked.items())})"
                      f"{f' beyond the {used} that read its dimension' if used else ''} but "
                      f"verify.suspect_budget={cfg.suspect_budget}")
  settings = _settings(config, data, methods)
  upstream = {"victim": victim.fingerprint, "suspect": suspect.fingerprint,
              "images": {k: fingerprint(v) for k, v in sorted(sets.items())}}
  stage = stages.open_stage(workdir, "verify", settings, upstream,
                            strict=config.get("strict_stages", False))
  done = stage.completed()
  if done is None:
    with stage.claimed() as mine:
      if mine:
        done = _compute(stage, cfg, config, victim, suspect, sets, asked, methods, skipped, data)
      else:
        done = stage.completed()
  else:
    console.stage_line("verify", f"restored {stage.dir} (nothing queried)")
  _print(done, cfg)
  return {**done, "stage_dir": stage.dir}


def _compute(stage, cfg, config, victim, suspect, sets, asked, methods, skipped, data) -> dict:
  t0 = time.perf_counter()
  answers = {k: suspect.features(v) for k, v in asked.items()}
  cache = {}

  def victim_fn(images):  # The provider's own features (each set computed once).
    key = fingerprint(images)
    if key not in cache:
      cache[key] = victim.features(images)
    return cache[key]
  ctx = Context(victim_fn, sets, answers, cfg, config.get("defense"), victim.meta,
                np.random.default_rng(int(cfg.seed)), data["dims"][0] == data["dims"][1])
  outcomes = [m.test(ctx) for m in methods]
  outcomes += [Outcome(name, note=why) for name, why in skipped.items()]
  combined = combine(outcomes, float(cfg.alpha))
  summary = {"complete": True, "victim": victim.spec, "suspect": suspect.spec,
             "victim_fingerprint": victim.fingerprint, "suspect_fingerprint": suspect.fingerprint,
             "data": data["describe"], "alpha": float(cfg.alpha),
             "suspect_queries": int(suspect.service.queries_used),
             "methods": {o.method: o.record() for o in outcomes}, "combined": combined,
             "verdict": verdict_line(combined, outcomes, float(cfg.alpha)),
             "wall_s": round(time.perf_counter() - t0, 2)}
  return stage.write_summary(summary)


def _print(summary: dict, cfg) -> None:
  if not parallel.is_main():
    return
  alpha = float(summary["alpha"])
  print(f"verify: suspect {summary['suspect']} against victim {summary['victim']} "
        f"({summary['suspect_queries']} suspect queries)")
  for record in summary["methods"].values():
    print(method_line(Outcome(**record), alpha))
  print(summary["verdict"], flush=True)
