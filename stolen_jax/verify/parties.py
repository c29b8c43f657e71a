"""The victim and the suspect behind one interface: any spec ``steal.target`` takes (an Orbax
checkpoint, ``import:``, ``callable:``, our HTTP API, an ``api:`` adapter). The suspect is
metered like any target: every image it answers is a query, within ``verify.suspect_budget``."""

import dataclasses
import os
from typing import Callable, Optional

import ml_collections
import numpy as np

from stolen_jax import eaas, stages, targets
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError


@dataclasses.dataclass
class Party:
  """An encoder as the verifier reaches it: ``service.query(images) -> features`` (metered),
  its meta (fingerprint, image_size, feature_dim when known)."""
  spec: str
  meta: dict
  service: object

  @property
  def fingerprint(self) -> str:
    return str(self.meta.get("fingerprint") or targets.absolute(self.spec))

  def features(self, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """The party's answers for ``images``, in requests of ``batch``."""
    out = [np.asarray(self.service.query(images[i:i + batch]), np.float32)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def open_party(spec: str, role: str, cfg, mesh, budget: Optional[int] = None) -> Party:
  """Opens ``spec`` (``role``: 'verify.victim' or 'verify.suspect' for messages)."""
  if not spec:
    raise ConfigError(f"{role} is required: a checkpoint, import:NAME:PATH, "
                      "callable:MODULE:FUNCTION, http(s)://... or api:ADAPTER.json")
  if targets.is_remote(spec):
    from stolen_jax.targets import remote
    block = ml_collections.ConfigDict(dict(target=spec, query_budget=budget,
                                           api_key=cfg.get("api_key"), image_size=None))
    target, _, service = remote.open_remote(block)
    return Party(spec, target.meta, service)
  if targets.kind(spec) == "checkpoint" and not os.path.exists(spec):
    raise ConfigError(f"{role}={spec}: no such checkpoint")
  target = targets.open(spec, mesh, int(cfg.batch_size), max_weights_gb=cfg.get("max_weights_gb"),
                        setting=role)
  return Party(spec, target.meta, eaas.QueryService(target.features_fn, budget=budget))


def recorded_training_data(spec: str) -> Optional[dict]:
  """The pretraining data a victim trained by this project recorded (its stage.json):
  {'dataset', 'split', 'num_examples', 'image_size', 'seed'}; None for other victims."""
  if targets.kind(spec) != "checkpoint" or not os.path.isdir(spec):
    return None
  if not os.path.exists(os.path.join(spec, "stage.json")):  # A stage root holding one stage.
    keyed = stages.find_stage_dirs(spec)
    spec = keyed[0] if len(keyed) == 1 else spec
  record = stages.read_json(os.path.join(spec, "stage.json")) or {}
  s = record.get("settings") or {}
  if record.get("stage") not in ("pretrain", "watermark") or "dataset" not in s:
    return None
  return {k: s.get(k) for k in ("dataset", "split", "num_examples", "image_size", "seed")}


def _split_pool(spec, split, num, seed, size, data_dir):
  """(the images ``sources.load`` would draw for (num, seed), the rest of the split)."""
  full = sources.load(spec, split, image_size=size, data_dir=data_dir).images
  idx = sources.subset_indices(len(full), num, seed)
  rest = np.setdiff1d(np.arange(len(full)), idx)
  return full[idx], full[rest]


MIN_HELD_OUT = 50


def load_sets(cfg, victim: Party) -> dict:
  """{'private': the victim's private training images (shuffled) or None, 'public': a
  held-out set of the same distribution}, at the victim's input size.

  The held-out set is, where it can be, the rest of the split the private images were drawn
  from (images of the same pool the victim never saw): dataset inference compares the two,
  and another split is another draw that may differ slightly (the embedded sets' train and
  test splits do, by 1.5 grey levels in mean: enough for a false positive).
  """
  size = int(victim.meta.get("image_size") or cfg.image_size or 32)
  recorded = recorded_training_data(victim.spec) if cfg.private == "auto" else None
  private, rest, public_spec = None, None, cfg.public
  if cfg.private not in (None, "", "none", "auto"):
    private, rest = _split_pool(cfg.private, cfg.private_split, cfg.private_num_examples,
                                int(cfg.seed), size, cfg.data_dir)
    source = f"{cfg.private}:{cfg.private_split}"
    if public_spec == "auto":
      public_spec = cfg.private
  elif recorded is not None:
    private, rest = _split_pool(recorded["dataset"], recorded["split"], recorded["num_examples"],
                                int(recorded["seed"] or 0), size, cfg.data_dir)
    source = f"{recorded['dataset']}:{recorded['split']}"
    if public_spec == "auto":
      public_spec = recorded["dataset"]
  if public_spec == "auto" and rest is None:
    raise ConfigError("verify.public is required for this victim (a held-out set of the "
                      "distribution it was trained on, e.g. tfds:cifar10 with "
                      "verify.public_split=test): it does not record its training data")
  if cfg.public == "auto" and rest is not None and len(rest) >= MIN_HELD_OUT:
    public = rest
    where = f"the {len(rest)} images of {source} the victim did not train on"
  else:
    public = sources.load(public_spec, cfg.public_split, image_size=size, data_dir=cfg.data_dir,
                          num_examples=cfg.num_samples, seed=int(cfg.seed) + 1).images
    where = f"{public_spec}:{cfg.public_split}"
  rng = np.random.default_rng(int(cfg.seed))
  public = public[rng.permutation(len(public))][:int(cfg.num_samples)]
  if private is not None:
    private = private[rng.permutation(len(private))]
  return {"private": private, "public": public,
          "describe": {"private": recorded or (cfg.private if private is not None else None),
                       "public": where}}
