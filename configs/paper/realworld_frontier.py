"""Table XI on this machine: what it costs to steal the real ImageNet encoder (EfficientNet-Lite0,
``configs/realworld/efficientnet_lite0.py``) — SA/TA on each downstream set and the held-out
cosine as functions of #queries and of what the attacker controls, every point with its
training wall time, so the doc draws the cost frontier (SA/TA against queries and minutes).

Run (scale = cpu | demo | paper; DIR holds the shared .npz sets; ``paper`` is the same study
at the paper's 100 epochs, for an accelerator):
  pip install -e '.[realworld]'
  python -m stolen_jax.main --config=configs/paper/realworld_frontier.py:cpu --workdir=workdir/frontier \\
      --config.steal.surrogate=npz:DIR/tinyimagenet32.npz \\
      --config.probe.datasets=npz:DIR/cifar10.npz,npz:DIR/mnist.npz \\
      --config.sweep.seeds=0,1 --config.sweep.doc=docs/results/realworld.md
A part of the study with ``:cpu,parts=queries|scaling`` (parts: queries, epochs, width, arch,
resolution, optimizer, scaling, attacks; default all; the widths read with ``widths=W1|W2``),
and the factors read at another base budget with ``base=500`` (the base recipe's queries;
2,000 by default). Finished cells are read back from the workdir, so running the parts one by
one and then the whole study recomputes nothing.

Every cell changes one factor of the base recipe (``BASE``: the real-target default
``defaults.REAL_TARGET_RECIPE`` at 2,000 queries — ResNet-18 at width 1/2, 32-px queries and
training, 30 epochs, Adam 1e-3, ℓ2-normalised answers, StolenEncoder; ``optimizer=sgd`` puts
the paper code's SGD in the base instead), except the query axis, which is the frontier's x.
Probes: the realworld config's MLP on 1,000 training and 500 test images per set. The
``train s`` column is the steal's training alone (the target's answers excluded, as the
issue's budget is stated).

What it should show (docs/results/realworld.md, 2 seeds per cell): SA/TA on CIFAR-10 rising
with the queries (0.46, 0.56, 0.71 at 500, 2,000, 10,000) and not with epochs at fixed
queries; Adam beating SGD and ℓ2-normalised answers beating raw and z-scored ones at a
fixed budget. (64-px queries and training cost 4× the FLOPs of every step; not run on a CPU.)
"""

import os

from stolen_jax import attacks, defaults, jobs, sweep

# The base recipe (the real-target default, ``defaults.REAL_TARGET_RECIPE``, at 2,000
# queries); each part's cells change the keys it names.
_R = defaults.REAL_TARGET_RECIPE
# Spelled out in this order: the tables' columns and cells' names follow BASE's key order.
BASE = {"steal.surrogate_size": 2000, "steal.arch": _R["arch"], "steal.width": _R["width"],
        "steal.image_size": _R["image_size"], "probe.image_size": _R["image_size"],
        **{f"steal.{k}": _R[k] for k in ("epochs", "optimizer", "lr", "weight_decay",
                                          "normalize_features", "answer_scaling", "attack",
                                          "batch_size")}}
OPTIMIZERS = {"sgd": {"steal.optimizer": "sgd", "steal.lr": 0.064, "steal.weight_decay": 5e-4},
              "adam": {"steal.optimizer": "adam", "steal.lr": 0.001, "steal.weight_decay": 0.0}}


def _query_count(text: str):
  """A number of queries (an integer of at least 64), or None."""
  return int(text) if text.isdigit() and int(text) >= 64 else None


def _positive_width(text: str):
  """A network width (a number above 0), or None."""
  try:
    return float(text) if float(text) > 0 else None
  except ValueError:
    return None


# The parts that read one key at chosen values: part -> (the key, the option that chooses
# its values ``OPTION=V1|V2``, the parser of one value, the values by default).
AXES = {"queries": ("steal.surrogate_size", "queries", _query_count, (500, 2000, 5000, 10000)),
        "width": ("steal.width", "widths", _positive_width, (0.25, 1.0))}
# Cells per part at each scale: changes to BASE (sizes scaled down for the demo).
PARTS = {
    "queries": [],  # The query axis, the frontier's x (AXES): filled in by cells().
    "epochs": [{"steal.epochs": 90}, {"steal.surrogate_size": 10000, "steal.epochs": 10}],
    "width": [],  # The stolen ResNet-18's widths (AXES): filled in by cells().
    "arch": [{"steal.arch": "resnet34"}],  # Deeper at the base's width.
    "resolution": [{"steal.image_size": 64, "probe.image_size": 64}],
    "optimizer": [],  # The other optimiser of OPTIMIZERS: filled in by cells().
    "scaling": [{"steal.normalize_features": False}, {"steal.answer_scaling": "standardize"}],
    # At equal queries: an attack buying V views per image gets queries // V images
    # (Cont-Steal's 4 views: 500 images for 2,000 queries).
    "attacks": [{"steal.attack": "conventional"}, {"steal.attack": "contsteal"}],
}
DEMO_SIZES = {500: 64, 2000: 128, 5000: 192, 10000: 256}


def _realworld_config():
  return jobs.load_config_file(
      os.path.join(os.path.dirname(__file__), "..", "realworld", "efficientnet_lite0.py"))


def _options(arg: str):
  """'SCALE[,parts=P1|P2][,base=QUERIES][,optimizer=sgd|adam][,queries=Q1|Q2][,widths=W1|W2]'
  -> (scale, parts, the base recipe, each of AXES' values)."""
  scale, *options = [p.strip() for p in arg.split(",")]
  if scale not in ("cpu", "demo", "paper"):
    raise ValueError(f"realworld_frontier: unknown scale {scale!r} (cpu, demo or paper)")
  parts, base = tuple(PARTS), dict(BASE)
  values = {part: axis[3] for part, axis in AXES.items()}
  by_option = {axis[1]: (part, axis[2]) for part, axis in AXES.items()}
  for option in options:
    key, sep, value = option.partition("=")
    parsed = [by_option[key][1](v) for v in value.split("|")] if key in by_option else None
    if key == "parts" and value:
      parts = tuple(value.split("|"))
      unknown = sorted(set(parts) - set(PARTS))
      if unknown:
        raise ValueError(f"realworld_frontier: unknown part(s) {unknown}; parts: "
                         f"{', '.join(PARTS)}")
    elif key == "base" and _query_count(value) is not None:
      base["steal.surrogate_size"] = _query_count(value)
    elif key == "optimizer" and value in OPTIMIZERS:
      base.update(OPTIMIZERS[value])
    elif parsed is not None and None not in parsed:
      values[by_option[key][0]] = tuple(parsed)
    else:
      raise ValueError(f"realworld_frontier: bad option {option!r} (parts=P1|P2 of "
                       f"{', '.join(PARTS)}; base=QUERIES and queries=Q1|Q2, each at least "
                       f"64; widths=W1|W2, each above 0; optimizer={'|'.join(OPTIMIZERS)})")
  return scale, parts, base, values


def _images_for(change: dict, queries: int) -> int:
  """Surrogate images an attack gets for ``queries``: queries // its views per image."""
  attack = attacks.get(change["steal.attack"])
  return queries // max(1, attack.query_views(attacks.block_of(defaults.steal_block(), attack)))


def _changes(part: str, base: dict, values: dict) -> list[dict]:
  """What the cells of ``part`` change in the ``base`` recipe (``values``: AXES' values)."""
  if part in AXES:
    return [{AXES[part][0]: v} for v in values[part]]
  if part == "optimizer":
    return [o for o in OPTIMIZERS.values() if o["steal.optimizer"] != base["steal.optimizer"]]
  return PARTS[part]


def cells(scale: str, parts, base: dict = BASE, values=None) -> list[dict]:
  """The study's cells (each a full assignment of ``BASE``'s keys): the ``base`` recipe first
  (every part is read against it), then each part's changes, duplicates once. ``values``:
  the values each of AXES reads (its defaults where not given)."""
  values = {**{part: axis[3] for part, axis in AXES.items()}, **(values or {})}
  out = []
  base_queries = base["steal.surrogate_size"]
  for part in parts:
    for change in [{}] + _changes(part, base, values):
      cell = {**base, **change}
      if "steal.attack" in change:
        cell["steal.surrogate_size"] = _images_for(change, base_queries)
      if scale == "demo":  # Sizes that embedded data and a test's minutes hold.
        cell.update({"steal.surrogate_size": DEMO_SIZES.get(cell["steal.surrogate_size"],
                                                              cell["steal.surrogate_size"] // 8),
                     "steal.epochs": max(1, cell["steal.epochs"] // 30),
                     "steal.width": cell["steal.width"] / 8, "steal.batch_size": 32})
        cell["steal.image_size"] = cell["probe.image_size"] = cell["steal.image_size"] // 2
      elif scale == "paper":  # The paper's 100 epochs where cpu has 30 (and in proportion).
        cell["steal.epochs"] = round(cell["steal.epochs"] * 100 / 30)
      if cell not in out:
        out.append(cell)
  return out


def _claims(config, varying, study) -> str:
  """Each changed factor against the base recipe ('SA/TA: CHANGED > BASE': does it help, beyond
  the seeds' spread?) and each query size against the next smaller one, as ``claims``
  checks them (cells named by their axis values, as the sweep names them)."""
  names = [",".join(str(c[k]) for k in varying) for c in sweep.cells(config)]
  base = names[0]  # cells() puts the base recipe first.
  only_queries = [k for k in BASE if k != "steal.surrogate_size"]
  on_query_axis = sorted((c["steal.surrogate_size"], n) for c, n in zip(study, names)
                         if {k: c[k] for k in only_queries} == {k: study[0][k] for k in only_queries})
  out = [f"SA/TA: {big} > {small}" for (_, small), (_, big) in zip(on_query_axis, on_query_axis[1:])]
  out += [f"SA/TA: {n} > {base}" for n in names[1:] if n not in dict(on_query_axis).values()]
  return "; ".join(out)


def get_config(arg="demo"):
  scale, parts, base, values = _options(arg)
  config = _realworld_config()
  config.job = "sweep"
  config.steal.eval_heldout = 200  # The held-out cosine to the true target (no query).
  if scale == "demo":  # A test's size.
    config.probe.num_train, config.probe.num_test, config.probe.epochs = 64, 32, 5
    config.steal.eval_heldout = 32
  study = cells(scale, parts, base, values)
  varying = [k for k in BASE if len({c[k] for c in study}) > 1] or ["steal.surrogate_size"]
  config.sweep = sweep.sweep_block()
  config.sweep.mode = "zip"
  # Keys constant over the chosen cells are set once (the table's columns are what varies).
  for key in BASE:
    if key not in varying:
      block, _, name = key.partition(".")
      config[block][name] = study[0][key]
  config.sweep.axes = "; ".join(f"{k}={','.join(str(c[k]) for c in study)}" for k in varying)
  config.sweep.plot = "frontier"
  config.sweep.claims = _claims(config, varying, study)
  config.sweep.note = ("Base recipe: " + ", ".join(f"{k.split('.')[1]}={v}" for k, v in base.items()
                                                   if k != "probe.image_size")
                       + f"; parts: {', '.join(parts)}. train s: the steal's training only "
                       "(the target's answers excluded).")
  config.sweep.doc_section = (f"The cost frontier ({scale}, base recipe at "
                              f"{base['steal.surrogate_size']} queries, "
                              f"{base['steal.optimizer']}: {', '.join(parts)})")
  return config
