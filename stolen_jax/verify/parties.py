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
  target = targets.open(spec, mesh, int(cfg.batch_size), max_weights_gb=cfg.get("max_weights_gb"))
  return Party(spec, target.meta, eaas.QueryService(target.features_fn, budget=budget))


def recorded_training_data(spec: str) -> Optional[dict]:
  """The pretraining data a victim trained by this project recorded (its stage.json):
  {'dataset', 'split', 'num_examples', 'image_size', 'seed'}; None for other victims."""
  if targets.kind(spec) != "checkpoint":
    return None
  record = stages.read_json(os.path.join(spec, "stage.json")) or {}
  s = record.get("settings") or {}
  if record.get("stage") not in ("pretrain", "watermark") or "dataset" not in s:
    return None
  return {k: s.get(k) for k in ("dataset", "split", "num_examples", "image_size", "seed")}


def load_sets(cfg, victim: Party) -> dict:
  """{'private': the victim's private training images (shuffled) or None, 'public': a
  held-out set of the same distribution}, at the victim's input size."""
  size = int(victim.meta.get("image_size") or cfg.image_size or 32)
  recorded = recorded_training_data(victim.spec) if cfg.private == "auto" else None
  private = None
  if cfg.private and cfg.private != "auto":
    private = sources.load(cfg.private, cfg.private_split, image_size=size,
                           num_examples=cfg.private_num_examples, seed=int(cfg.seed),
                           data_dir=cfg.data_dir).images
    public_spec = cfg.public if cfg.public != "auto" else cfg.private
  elif recorded is not None:
    private = sources.load(recorded["dataset"], recorded["split"], image_size=size,
                           num_examples=recorded["num_examples"], seed=int(recorded["seed"] or 0),
                           data_dir=cfg.data_dir).images
    public_spec = cfg.public if cfg.public != "auto" else recorded["dataset"]
  else:
    public_spec = cfg.public
  if not public_spec or public_spec == "auto":
    raise ConfigError("verify.public is required for this victim (a held-out set of the "
                      "distribution it was trained on, e.g. tfds:cifar10 with "
                      "verify.public_split=test): it does not record its training data")
  public = sources.load(public_spec, cfg.public_split, image_size=size,
                        num_examples=cfg.num_samples, seed=int(cfg.seed) + 1,
                        data_dir=cfg.data_dir).images
  if private is not None:
    private = private[np.random.default_rng(int(cfg.seed)).permutation(len(private))]
  return {"private": private, "public": public,
          "describe": {"private": recorded or cfg.private, "public": f"{public_spec}:{cfg.public_split}"}}
