"""The field's attacks against the same API, crossed with the provider's defenses, at equal
query budgets: StolenEncoder, the conventional attack, Dziedzic et al.'s InfoNCE and soft-NN,
Cont-Steal and RDA (``stolen_jax.attacks``) × none, top-k, rounding, noise, poisoning, B4B.

Run (scale = paper | cpu | demo):
  python -m stolen_jax.main --config=configs/paper/attacks_x_defenses.py:demo
  python -m stolen_jax.main --config=configs/paper/attacks_x_defenses.py:cpu --workdir=workdir/attacks \\
      --config.pretrain.dataset=npz:DIR/cifar10.npz --config.pretrain.knn.dataset=npz:DIR/cifar10.npz \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/mnist.npz,npz:DIR/cifar10.npz --config.sweep.doc=docs/results/attacks.md
``--config.sweep.seeds=0,1`` for error bars; a part of the table with options after the scale,
e.g. ``attacks_x_defenses.py:cpu,budgets=1000,defenses=none|b4b,attacks=stolenencoder|rda``. The adaptive adversary:
``sybils=2|5`` adds, against B4B, the one-answer attacks spread over 2 and 5 accounts (the
same queries in all: |D| + (N − 1)·M, ``sybil_plan``); ``recover=auto`` adds each attack
recognising and undoing each defense's perturbation (``steal.recover``); ``scaling=standardize``
adds a twin of every StolenEncoder cell without a defense or against B4B whose loss compares
per-dimension z-scores of the answers (``steal.answer_scaling``: what undoes B4B's secret
per-dimension affine map and gives its constant padding no weight).

Equal budgets: an attack whose plan buys V answers per surrogate image (Cont-Steal's views,
RDA's prototype views) gets budget // V images, so every row of a budget paid the same
queries (the #Queries column); its batch is min(batch, images) so it trains at all. Each row
also reports the held-out cosine to the true target, the training wall time and XLA's FLOP
count. Defense strengths (``config.defense``): top-k keeps 1/8 of the target's dimensions,
rounding to 1 decimal, Gaussian noise 0.1, poisoning ε = 1 (ℓ2), B4B at its defaults. The
poisoning provider's shadow encoder (one per seed, shared by every attack) trains at the
scale's steal batch (``defense.shadow.batch_size``; set it too when changing
``steal.batch_size``), not at the smaller batch a small surrogate forces on an attack.

What it should show (the attacks' papers, CIFAR-10 targets): with defenses off, Cont-Steal
and RDA above StolenEncoder above the conventional attack at the same *images*; at the same
*queries* the augmented-view plans pay V× per image, which this table makes visible.
"""

from stolen_jax import attacks, defaults, sweep

BUDGETS = {"paper": (1000, 2500), "cpu": (300, 1000), "demo": (128, 512)}
DEFENSES = ("none", "topk", "round", "noise", "poison", "b4b")


def _views(config, name: str) -> int:
  attack = attacks.get(name)
  return max(1, attack.query_views(attacks.block_of(config.steal, attack)))


def _options(arg: str):
  """'SCALE[,budgets=B1|B2][,defenses=D1|D2][,attacks=A1|A2][,sybils=2|5][,recover=auto]
  [,scaling=standardize]' (a part of the table; the default is every attack and defense, one
  account, no recovery, the answers as given)."""
  scale, *parts = [p.strip() for p in arg.split(",")]
  if scale not in BUDGETS:
    raise ValueError(f"attacks_x_defenses: unknown scale {scale!r} (one of {sorted(BUDGETS)})")
  options = {"budgets": None, "defenses": None, "attacks": None, "sybils": None,
             "recover": None, "scaling": None}
  for part in parts:
    key, sep, value = part.partition("=")
    if not sep or key not in options or not value:
      raise ValueError(f"attacks_x_defenses: bad option {part!r} (budgets=B1|B2, "
                       "defenses=D1|D2, attacks=A1|A2, sybils=N1|N2, recover=auto, "
                       "scaling=standardize)")
    options[key] = value.split("|")
  if options["recover"] not in (None, ["auto"]):
    raise ValueError(f"attacks_x_defenses: recover={'|'.join(options['recover'])!r}; "
                     "the option is recover=auto (leave it out for no recovery)")
  if options["scaling"] not in (None, ["standardize"]):
    raise ValueError(f"attacks_x_defenses: scaling={'|'.join(options['scaling'])!r}; the "
                     "option is scaling=standardize")
  for name in options["attacks"] or ():
    attacks.get(name)  # An unknown attack fails here, naming the registered ones.
  budgets = tuple(int(b) for b in options["budgets"]) if options["budgets"] else BUDGETS[scale]
  sybils = tuple(int(n) for n in options["sybils"] or ())
  names = tuple(options["attacks"] or attacks.REGISTRY)
  return (scale, budgets, tuple(options["defenses"] or DEFENSES), names, sybils,
          bool(options["recover"]), bool(options["scaling"]))


def sybil_plan(budget: int, accounts: int) -> tuple[int, int]:
  """(surrogate images, mapping images) of a sybil plan that pays ``budget`` queries in all:
  |D| + (N − 1)·M = budget with M = budget // (4N) (at least 2)."""
  mapping = max(2, budget // (4 * accounts))
  return budget - (accounts - 1) * mapping, mapping


def get_config(arg="demo"):
  scale, budgets, defenses, names, sybils, recover, scaling = _options(arg)
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.defense.k = 64 if scale == "paper" else 8  # 1/8 of the target's feature dimensions.
  config.defense.decimals = 1
  # The provider's poisoning shadow trains at the attacker's usual batch on its own data, not
  # at the batch a small surrogate forces on an attack (RDA's 30): one shadow per seed.
  config.defense.shadow.batch_size = config.steal.batch_size
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  cells = []
  for budget in budgets:
    for name in names:
      views = _views(config, name)
      images = budget // views
      for defense in defenses:
        batch = min(config.steal.batch_size, images)
        mine = [(name, images, batch, defense, 1, 500, "none", "none")]
        if recover and defense != "none":
          mine.append((name, images, batch, defense, 1, 500, "auto", "none"))
        if defense == "b4b" and views == 1:  # Sybils take one-answer-per-image plans.
          for n in sybils:
            size, mapping = sybil_plan(budget, n)
            mine.append((name, size, min(config.steal.batch_size, size), defense, n, mapping,
                         "none", "none"))
        if scaling and name == attacks.DEFAULT and defense in ("none", "b4b"):
          mine += [cell[:-1] + ("standardize",) for cell in mine]
        cells += mine
  axis_names = ("steal.attack", "steal.surrogate_size", "steal.batch_size", "defense.name",
                "steal.sybils", "steal.sybil_mapping", "steal.recover", "steal.answer_scaling")
  used = ([0, 1, 2, 3] + ([4, 5] if sybils else []) + ([6] if recover else [])
          + ([7] if scaling else []))
  columns = list(zip(*cells))
  config.sweep.axes = "; ".join(f"{axis_names[i]}={','.join(str(v) for v in columns[i])}"
                                for i in used)
  config.sweep.note = (f"Budgets {' and '.join(map(str, budgets))} queries; "
                       "steal.surrogate_size = budget // the attack's views per image.")
  config.sweep.plot = "grid:steal.attack,defense.name"
  config.sweep.doc_section = f"Attacks × defenses at equal query budgets ({scale})"
  return config
