"""Prove it was stolen: every attack of ``attacks_x_defenses.py`` against a provider that
watermarks nothing, watermarks its answers (``defense.name=answer_watermark``) or serves a
watermarked encoder (``watermark.enabled``), each stolen encoder verified against its target
by every method that applies (``stolen_jax.verify``), beside innocent encoders.

Run (scale = paper | cpu | demo):
  python -m stolen_jax.main --config=configs/paper/verification.py:demo --workdir=workdir/verification \\
      --config.sweep.seeds=0,1 --config.sweep.doc=docs/results/verification.md
  (``:cpu`` with the datasets named as in ``attacks_x_defenses.py``; options after the scale:
  ``budgets=B1|B2``, ``defenses=none|answer_watermark|encoder_watermark|noise|...``,
  ``attacks=stolenencoder|contsteal|...``.)
The cells' stages are those of ``attacks_x_defenses.py`` (a finished cell of it is reused).

Innocents (``verify.innocents``): a SimCLR target of another seed on other data, a MoCo
target of another seed on the attacker's kind of data, and the attacker's own encoder
pre-trained on its surrogate set without a query — verified against every cell's target.

What it should show: the table's columns give, per attack and provider, each method's median
p-value and how many seeds called the stolen encoder stolen at α = 0.01 (its TPR); the
innocents' table gives the measured FPR at α = 0.01 and 0.05 (at most about α).
"""

from stolen_jax import attacks, defaults, sweep

PROVIDERS = {"none": ("none", False), "answer_watermark": ("answer_watermark", False),
             "encoder_watermark": ("none", True)}
DEFAULT_PROVIDERS = ("none", "answer_watermark", "encoder_watermark")
BUDGETS = {"paper": (2500,), "cpu": (1000,), "demo": (512,)}
INNOCENTS = {
    "demo": "simclr:seed=101,dataset=embedded:textures; moco:seed=102,dataset=embedded:scenes; "
            "attacker_pretrain",
    "cpu": "simclr:seed=101,num_examples=5000; moco:seed=102,num_examples=5000; attacker_pretrain",
    "paper": "simclr:seed=101; moco:seed=102; attacker_pretrain",
}


def _options(arg: str):
  scale, *parts = [p.strip() for p in arg.split(",")]
  budgets, providers, names = BUDGETS[scale], DEFAULT_PROVIDERS, tuple(attacks.REGISTRY)
  for part in parts:
    key, sep, value = part.partition("=")
    if key == "budgets" and sep:
      budgets = tuple(int(b) for b in value.split("|"))
    elif key == "defenses" and sep:
      providers = tuple(value.split("|"))
    elif key == "attacks" and sep:
      names = tuple(value.split("|"))
      for name in names:
        attacks.get(name)
    else:
      raise ValueError(f"verification: bad option {part!r} (budgets=B1|B2, defenses=D1|D2, "
                       "attacks=A1|A2)")
  return scale, budgets, providers, names


def get_config(arg="demo"):
  scale, budgets, providers, names = _options(arg)
  # The settings of attacks_x_defenses.py (so its finished stages are reused).
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.defense.k = 64 if scale == "paper" else 8
  config.defense.decimals = 1
  config.defense.shadow.batch_size = config.steal.batch_size
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  config.verify = defaults.verify_block()
  config.verify.enabled = True
  config.verify.innocents = INNOCENTS[scale]
  # The attacker's own pre-trained innocent on the budget's worth of surrogate images: one
  # encoder for every cell (RDA's 51 images would not fill a pre-training batch).
  config.verify.innocent_surrogate_size = max(budgets)
  config.watermark = defaults.watermark_block()
  config.verify.watermark_seed = config.watermark.seed = 20221107
  config.defense.watermark.seed = 20221107
  cells = []
  for budget in budgets:
    for name in names:
      attack = attacks.get(name)
      images = budget // max(1, attack.query_views(attacks.block_of(config.steal, attack)))
      for provider in providers:
        defense, marked = PROVIDERS.get(provider, (provider, False))
        cells.append((name, images, min(config.steal.batch_size, images), defense, marked))
  keys = ("steal.attack", "steal.surrogate_size", "steal.batch_size", "defense.name",
          "watermark.enabled")
  config.sweep.axes = "; ".join(f"{k}={','.join(str(v) for v in col)}"
                                for k, col in zip(keys, zip(*cells)))
  config.sweep.note = (f"Budgets {' and '.join(map(str, budgets))} queries; providers "
                       f"{', '.join(providers)}; innocents: {config.verify.innocents}.")
  config.sweep.plot = ""
  config.sweep.doc_section = f"Ownership verification ({scale})"
  return config
