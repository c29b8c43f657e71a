"""The library face: the command line's jobs as Python calls, for notebooks and scripts.

  import stolen_jax as sj
  target = sj.pretrain(workdir="workdir/api")                       # the demo's target
  r = sj.steal(target.path, "embedded:scenes", budget=512, workdir="workdir/api")
  print(r.table, r.queries_paid)                                     # a rerun: 0 paid
  features = r.encoder(images_uint8)                                 # (N, D)
  print(sj.probe(r.encoder, "embedded:glyphs", workdir="workdir/api").table)

Each call builds the same config the command line would (the same blocks of
``stolen_jax.defaults``, keyword overrides with the config's own names) and runs the same job
through ``jobs.run``: the same stage keys, cache, journal, budget, progress and errors. A
result from here and from ``python -m stolen_jax.main`` with the same settings is the same
stage directory, read back, not recomputed. ``base`` picks the settings a call starts from:
``"demo"`` (sized for a laptop CPU, the default), ``"paper"`` (§V-A), or a config file.

Overrides: ``epochs=5`` sets the call's own block (``steal.epochs`` in ``steal``);
``**{"probe.epochs": 3}`` any key by its dotted path. A key the config does not have is one
``ConfigError`` naming the nearest one, as on the command line.
"""

import dataclasses
import difflib
import os
import shutil
import sys
import types
from typing import Any, Mapping, Optional, Sequence, Union

from stolen_jax import defaults
from stolen_jax.errors import ConfigError

Spec = Union[str, "Encoder"]


class _CallableModule(types.ModuleType):
  """A stage's module that is also its API call (``stolen_jax.steal(...)``)."""

  def __call__(self, *args, **kwargs):
    return getattr(sys.modules[__name__], self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module: types.ModuleType) -> None:
  """Makes ``stolen_jax.<name>`` callable as ``stolen_jax.api.<name>`` (the module stays the
  module: ``from stolen_jax import steal; steal.run(...)`` is unchanged)."""
  module.__class__ = _CallableModule


def _base(base: str, job: str, seed: int):
  """The config a call starts from (``demo``, ``paper`` or a config file's ``get_config``),
  for ``job`` with ``seed``."""
  if base == "demo":
    config = defaults.demo_config()
  elif base == "paper":
    config = defaults.scaled_config("paper")
  elif os.path.isfile(str(base).split(":")[0]):
    from stolen_jax import jobs
    path, _, arg = str(base).partition(":")
    config = jobs.load_config_file(path, arg)
  else:
    raise ConfigError(f"base={base!r}: 'demo', 'paper' or the path of a config file")
  config.job, config.seed = job, seed
  return config


def _set(config, path: str, value) -> None:
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      where = ".".join(parts[:i]) or "the config"
      near = difflib.get_close_matches(part, keys, n=1)
      raise ConfigError(f"unknown setting {path!r}: {where} has no key {part!r}"
                        + (f"; did you mean {'.'.join(parts[:i] + [near[0]])!r}?" if near else ""))
    if i < len(parts) - 1:
      node = node[part]
  try:
    node[parts[-1]] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f"setting {path}={value!r}: {e}") from None


def _apply(config, block: str, overrides: Mapping[str, Any]) -> None:
  for name, value in overrides.items():
    _set(config, name if "." in name else f"{block}.{name}", value)


def _spec(encoder: Spec) -> str:
  return encoder.path if isinstance(encoder, Encoder) else str(encoder)


def _run(config, workdir: str) -> dict:
  from stolen_jax import jobs
  return jobs.run(config, workdir)


def _markdown(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join("—" if row.get(c) is None else str(row.get(c))
                                   for c in columns) + " |")
  return "\n".join(lines)


class Encoder:
  """An encoder of the workdir (a target, a stolen encoder) or any target spec:
  ``encoder(uint8 NHWC images) -> (N, D) features``; ``save(path)`` copies its checkpoint."""

  def __init__(self, path: str):
    self.path = str(path)
    self._target = None

  def __call__(self, images) -> Any:
    import numpy as np
    if self._target is None:
      from stolen_jax import parallel, targets
      self._target = targets.open(self.path, parallel.make_mesh())
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ConfigError(f"an encoder takes uint8 images (N, H, W, 3), not {images.dtype} "
                        f"{images.shape}")
    return np.asarray(self._target.features_fn(images))

  @property
  def meta(self) -> dict:
    """What the encoder's record says (architecture, feature dimension, fingerprint, ...)."""
    if self._target is None:
      self(__import__("numpy").zeros((1, 8, 8, 3), "uint8"))
    return dict(self._target.meta)

  def save(self, path: str) -> str:
    """Copies the encoder's checkpoints to ``path`` (usable as ``steal.target`` or
    ``probe.encoder``); returns ``path``."""
    source = os.path.join(self.path, "checkpoints")
    if not os.path.isdir(source):
      raise ConfigError(f"{self.path} has no checkpoints to save (an imported or callable "
                        "target is saved where it came from)")
    shutil.copytree(source, os.path.join(path, "checkpoints"), dirs_exist_ok=False)
    return path

  def __repr__(self):
    return f"Encoder({self.path!r})"


@dataclasses.dataclass(frozen=True)
class Result:
  """A job's outcome: its stage directory, its summary (read-only), rows and a markdown
  table of them."""
  stage_dir: str
  summary: Mapping[str, Any]
  rows: tuple
  table: str


@dataclasses.dataclass(frozen=True)
class StealResult(Result):
  """A steal: the stolen ``encoder``, the queries it holds (``queries``), those paid by
  this call (``queries_paid``: 0 when the stage was read back) and their cost."""
  encoder: Encoder = None
  queries: int = 0
  queries_paid: int = 0
  cost: float = 0.0


def open_target(spec: str) -> Encoder:
  """Any target spec (a checkpoint or stage directory, ``import:NAME:PATH``,
  ``callable:MODULE:FUNCTION``) as an ``Encoder``."""
  return Encoder(spec)


@dataclasses.dataclass(frozen=True)
class PretrainResult(Result):
  """A pretraining: the target ``encoder``."""
  encoder: Encoder = None


def pretrain(*, workdir: str = "workdir/api", base: str = "demo", seed: int = 0,
             **overrides) -> PretrainResult:
  """``job=pretrain``: the target encoder of ``base`` (overrides: ``pretrain.*``)."""
  config = _base(base, "pretrain", seed)
  _apply(config, "pretrain", overrides)
  summary = dict(_run(config, workdir))
  row = {"method": config.pretrain.method, "arch": config.pretrain.arch,
         "epochs": config.pretrain.epochs, "kNN accuracy": summary.get("knn_accuracy")}
  return PretrainResult(summary["stage_dir"], types.MappingProxyType(summary), (row,),
                        _markdown([row], list(row)), Encoder(summary["stage_dir"]))


def steal(target: Spec, surrogate: str, *, attack: str = "stolenencoder",
          budget: Optional[int] = None, defense: Union[None, str, Mapping] = None,
          workdir: str = "workdir/api", base: str = "demo", seed: int = 0,
          **overrides) -> StealResult:
  """``job=steal``: steal ``target`` with the attack ``attack`` on ``surrogate`` images (a
  data source, optionally ``SOURCE@SPLIT``: ``"npz:data/tiny.npz@test"``),
  at most ``budget`` queries (the surrogate set is then ``budget`` images, one answer each,
  or ``budget // views`` for an attack of several views, unless ``surrogate_size`` is
  given), behind ``defense`` (a name, or {name, and its settings}). Overrides: ``steal.*``."""
  config = _base(base, "steal", seed)
  s = config.steal
  s.target, s.attack, s.query_budget = _spec(target), attack, budget
  source, _, split = str(surrogate).partition("@")
  s.surrogate = source
  if split:
    s.surrogate_split = split
  if defense is not None:
    items = {"name": defense} if isinstance(defense, str) else dict(defense)
    _apply(config, "defense", items)
  _apply(config, "steal", overrides)
  if budget is not None and "surrogate_size" not in overrides:
    from stolen_jax.steal.settings import query_views
    s.surrogate_size = int(budget) // max(query_views(s), 1)
  summary = _run(config, workdir)
  restored = bool(summary.get("restored"))
  paid = 0 if restored else int(summary.get("queries_this_run") or 0)
  cost = summary.get("api_cost")
  if cost is None:
    cost = int(summary.get("queries") or 0) * float(s.price_per_1000) / 1000
  held = summary.get("heldout") or {}
  row = {"attack": summary.get("attack"), "queries": summary.get("queries"),
         "paid now": paid, "cost ($)": round(cost, 4),
         "held-out cos": held.get("stolen_cosine") and round(held["stolen_cosine"], 4),
         "random cos": held.get("random_cosine") and round(held["random_cosine"], 4),
         "train s": summary.get("train_s"), "restored": restored}
  return StealResult(summary["stage_dir"], types.MappingProxyType(dict(summary)), (row,),
                     _markdown([row], list(row)), Encoder(summary["stage_dir"]),
                     int(summary.get("queries") or 0), paid, float(cost))


def probe(encoder: Spec, datasets: Union[str, Sequence[str]], *, workdir: str = "workdir/api",
          base: str = "demo", seed: int = 0, **overrides) -> Result:
  """``job=probe``: MLP probes of ``encoder`` on each downstream set (test accuracy per
  set). Overrides: ``probe.*``."""
  config = _base(base, "probe", seed)
  config.probe.encoder = _spec(encoder)
  config.probe.datasets = datasets if isinstance(datasets, str) else ",".join(datasets)
  _apply(config, "probe", overrides)
  summary = _run(config, workdir)
  rows = tuple({"dataset": r["dataset"], "accuracy (%)": round(100 * r["accuracy"], 2),
                "train": r["num_train"], "test": r["num_test"]} for r in summary["results"])
  return Result(os.path.join(workdir, "probe"), types.MappingProxyType(dict(summary)), rows,
                _markdown(rows, list(rows[0])))


def sweep(axes: str, *, seeds: Sequence[int] = (0,), workdir: str = "workdir/api",
          base: str = "demo", executor: str = "local", **overrides) -> Result:
  """``job=sweep``: the grid ``axes`` (``'steal.lambda_=1,20; steal.distance=l2,cosine'``)
  over ``seeds``, its table as rows and markdown. Overrides: ``sweep.*`` or dotted keys."""
  config = _base(base, "sweep", 0)
  from stolen_jax import sweep as sweep_lib
  if config.get("sweep") is None:
    config.sweep = sweep_lib.sweep_block()
  config.sweep.axes, config.sweep.seeds, config.sweep.executor = axes, tuple(seeds), executor
  _apply(config, "sweep", overrides)
  out = _run(config, workdir)
  with open(os.path.join(workdir, "results.md")) as f:
    table = f.read()
  return Result(workdir, types.MappingProxyType({k: v for k, v in out.items() if k != "rows"}),
                tuple(out["rows"]), table)
