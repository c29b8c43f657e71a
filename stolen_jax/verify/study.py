"""Verification inside pipeline cells (``verify.enabled``): every cell's stolen encoder, and
the innocent encoders of ``verify.innocents``, verified against the cell's target — the
columns and the false-positive table of ``configs/paper/verification.py``.

Innocents (``verify.innocents``, ';'-separated): ``simclr:KEY=VALUE,...`` or
``moco:KEY=VALUE,...`` — a target pre-trained like the cell's with those ``pretrain``
settings changed (another seed, other data), trained once per workdir as its own stage;
``attacker_pretrain`` — the attacker's own encoder pre-trained on its surrogate set with no
query (``steal.variant=pretrain_encoder``). None of them saw the victim's answers.
"""

import contextlib
import copy
import io

from stolen_jax import console, pretrain, steal
from stolen_jax.errors import ConfigError

ATTACKER_PRETRAIN = "attacker_pretrain"


def parse_innocents(spec: str) -> list[tuple[str, dict]]:
  """'simclr:seed=101,dataset=embedded:textures; attacker_pretrain' -> [(name, overrides)]."""
  out = []
  for part in [p.strip() for p in str(spec or "").split(";") if p.strip()]:
    if part == ATTACKER_PRETRAIN:
      out.append((part, {}))
      continue
    method, _, rest = part.partition(":")
    if method not in ("simclr", "moco"):
      raise ConfigError(f"verify.innocents: {part!r} is not simclr:KEY=VALUE,..., "
                        f"moco:KEY=VALUE,... or {ATTACKER_PRETRAIN}")
    overrides = {"method": method}
    for item in [i for i in rest.split(",") if i]:
      key, sep, value = item.partition("=")
      if not sep:
        raise ConfigError(f"verify.innocents: {item!r} in {part!r} is not KEY=VALUE")
      overrides[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value.strip()
    out.append((part, overrides))
  return out


def attacker_pretrain_config(config):
  """The cell's config for the attacker's own pre-trained encoder: StolenEncoder's
  ``pretrain_encoder`` variant on ``verify.innocent_surrogate_size`` surrogate images (0: the
  cell's, at least one pre-training batch), whatever the cell's attack — one stage for every
  cell of a study that sets the size."""
  cfg = copy.deepcopy(config)
  size = int(cfg.verify.get("innocent_surrogate_size") or 0) or max(
      int(cfg.steal.surrogate_size), int(cfg.pretrain.batch_size))
  with cfg.unlocked():
    cfg.steal.variant, cfg.steal.attack = "pretrain_encoder", "stolenencoder"
    cfg.steal.surrogate_size, cfg.steal.batch_size = size, min(int(cfg.steal.batch_size), size)
  return cfg


def innocent_encoder(config, workdir: str, name: str, overrides: dict, target, mesh) -> str:
  """The stage directory of the innocent ``name`` (trained here if not yet)."""
  if name == ATTACKER_PRETRAIN:
    return steal.run(attacker_pretrain_config(config), workdir, mesh=mesh,
                     target=target)["stage_dir"]
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.steal.target = None
    for key, value in overrides.items():
      if key == "seed":
        cfg.target_seed = value
      else:
        cfg.pretrain[key] = value
  stage, data = pretrain.open_stage(cfg, workdir, cfg.get("strict_stages", False))
  if stage.completed() is None:
    with stage.claimed() as mine:
      if mine:
        console.stage_line("verify", f"training the innocent encoder {name}")
        pretrain.train(cfg.pretrain, stage.dir, pretrain.target_seed(cfg), data=data)
  return stage.dir


def _p_values(config, workdir: str, victim: str, suspect: str) -> dict:
  from stolen_jax.verify import job
  cfg = copy.deepcopy(config)
  with cfg.unlocked():
    cfg.verify.victim, cfg.verify.suspect = victim, suspect
    # Each seed of a cell draws its own public subset, halves and decoys: the seeds'
    # verifications of one innocent are separate trials, not one trial repeated.
    cfg.verify.seed = int(config.seed)
  with contextlib.redirect_stdout(io.StringIO()):  # The cell prints one line for all.
    out = job.run(cfg, workdir)
  return {m: r["p_value"] for m, r in out["methods"].items() if r["p_value"] is not None}


def verify_cell(config, workdir: str, target_path: str, stolen_dir: str, target, mesh) -> dict:
  """{'stolen': {method: p}, 'innocents': {name: {method: p}}} for this cell."""
  out = {"stolen": _p_values(config, workdir, target_path, stolen_dir), "innocents": {}}
  for name, overrides in parse_innocents(config.verify.get("innocents")):
    path = innocent_encoder(config, workdir, name, overrides, target, mesh)
    out["innocents"][name] = _p_values(config, workdir, target_path, path)
  shown = ", ".join(f"{m} p={p:.2g}" for m, p in out["stolen"].items())
  console.stage_line("verify", f"stolen encoder: {shown}; {len(out['innocents'])} innocents")
  return out
