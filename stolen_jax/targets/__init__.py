"""Targets: something that answers uint8 images with feature vectors, with a fingerprint.

``open(spec, mesh)`` gives a ``Target`` for every kind of ``steal.target`` the tool takes:

* a checkpoint of ours (a path: an Orbax checkpoint, a stage directory);
* ``import:NAME:PATH``: published weights (``.pth``/``.pt``, either torch format, or
  ``.safetensors``) of a registered architecture (``targets.published``), with its
  preprocessing; read without torch, their pickles restricted to what a state dict holds;
* ``callable:MODULE:FUNCTION``: a Python function taking a uint8 NHWC batch and returning
  its features, so a user wraps any PyTorch/TF model or client in three lines;
* ``http(s)://HOST:PORT`` (our API) and ``api:ADAPTER.json`` (any embedding API) are remote:
  the steal opens them through their services (``steal.open_remote``).

The query stage, the cache, the budget and the defenses do not care which.
"""

import dataclasses
import hashlib
import importlib
import inspect
import os
from typing import Callable, Optional

import numpy as np

from stolen_jax.errors import ConfigError, UserError


@dataclasses.dataclass
class Target:
  """The target encoder as the provider holds it: its meta (with the weights' content
  ``fingerprint``) and its true features (no defense, no metering; None for an HTTP API)."""
  meta: dict
  features_fn: Optional[Callable[[np.ndarray], np.ndarray]]


def kind(spec) -> str:
  """'checkpoint', 'import', 'callable', 'http' or 'adapter' for a ``steal.target``."""
  spec = str(spec or "")
  if spec.startswith(("http://", "https://")):
    return "http"
  for prefix in ("import", "callable", "api"):
    if spec.startswith(prefix + ":"):
      return "adapter" if prefix == "api" else prefix
  return "checkpoint"


def is_remote(spec) -> bool:
  """Whether the target is reached over the network (our API or an adapter)."""
  return kind(spec) in ("http", "adapter")


def absolute(spec: str) -> str:
  """``spec`` as summaries record it: a checkpoint path made absolute, other kinds as given."""
  return os.path.abspath(spec) if kind(spec) == "checkpoint" else spec


def describe(spec) -> dict:
  """The target's settings as results tables record them (paths made absolute)."""
  k = kind(spec)
  if k == "checkpoint":
    return {"checkpoint": absolute(spec)}
  if k == "import":
    name, path = parse_import(spec)
    return {"import": name, "weights": path if path == "package" else os.path.abspath(path)}
  return {k: spec}


def parse_import(spec: str, setting: str = "steal.target") -> tuple[str, str]:
  """'import:NAME:PATH' -> (NAME, PATH)."""
  parts = spec.split(":", 2)
  if len(parts) != 3 or not parts[1] or not parts[2]:
    raise ConfigError(f"{setting}={spec!r}: write import:NAME:PATH, e.g. "
                      "import:torchvision_resnet50:/weights/resnet50.pth")
  return parts[1], os.path.expanduser(parts[2])


def open(spec: str, mesh, batch_size: int = 512, max_weights_gb: Optional[float] = None,  # noqa: A001
         setting: str = "steal.target", **overrides) -> Target:
  """The target ``spec`` names (see the module docstring); ``overrides`` change the imported
  architecture's hyperparameters (tests use reduced widths); an imported weights file may
  declare at most ``max_weights_gb`` GB of tensors (None: ``lazy.DEFAULT_MAX_WEIGHTS_GB``);
  ``setting`` is the config key errors name."""
  k = kind(spec)
  if k == "import":
    return open_imported(*parse_import(spec, setting), mesh, batch_size,
                         max_weights_gb=max_weights_gb, **overrides)
  if k == "callable":
    return open_callable(spec, setting)
  if k in ("http", "adapter"):
    raise ConfigError(f"{spec} is a remote API: the steal opens it through its service")
  from stolen_jax import features
  features_fn, meta = features.restore_features_fn(spec, mesh, batch_size)
  return Target(meta, features_fn)


def import_variables(name: str, path: str, input_size: Optional[int] = None,
                     max_weights_gb: Optional[float] = None, **overrides):
  """(flax module, variables, its Published entry): ``path``'s weights laid out for ``name``
  (``input_size``: the images' size, where the architecture's shapes depend on it). Only the
  tensors the architecture uses are read from the file."""
  from stolen_jax.targets import convert, published, state_dict
  entry = published.get(name)
  if path == "package":
    path = published.packaged_weights(name)
  module = entry.build(**overrides)
  size = input_size or overrides.get("image_size") or entry.preprocess.crop
  steps = convert.plan(module, size, entry.translate)
  variables = convert.load(state_dict.read(path, max_weights_gb), steps, name)
  return module, variables, entry


def open_imported(name: str, path: str, mesh, batch_size: int = 512,
                  preprocess=None, max_weights_gb: Optional[float] = None, **overrides) -> Target:
  """Published weights as a target: preprocessing and the encoder in one jitted function."""
  import jax
  from stolen_jax import checkpoint, features
  module, variables, entry = import_variables(name, path, max_weights_gb=max_weights_gb,
                                              **overrides)
  prep = preprocess or entry.preprocess
  variables = jax.tree_util.tree_map(jax.numpy.asarray, variables)

  @jax.jit
  def forward(v, images):
    return module.apply(v, prep(images), train=False)
  fingerprint = hashlib.sha256((checkpoint.fingerprint_tree(variables) + str(prep.record())
                                ).encode()).hexdigest()[:16]
  meta = {"arch": name, "kind": "import", "weights": path, "feature_dim": int(module.feature_dim),
          "image_size": int(prep.crop), "preprocess": prep.record(), "fingerprint": fingerprint}
  return Target(meta, lambda images: features.extract(forward, variables, images, mesh, batch_size))


def load_callable(spec: str, setting: str = "steal.target"):
  """(function, fingerprint, 'MODULE.FUNCTION') of ``callable:MODULE:FUNCTION``. The
  fingerprint hashes the source file of its module, so editing the function is new code
  (answers it made are not reused for other code)."""
  parts = spec.split(":", 2)
  if len(parts) != 3:
    raise ConfigError(f"{setting}={spec!r}: write callable:MODULE:FUNCTION")
  try:
    module = importlib.import_module(parts[1])
    fn = getattr(module, parts[2])
  except (ImportError, AttributeError) as e:
    raise ConfigError(f"{setting}={spec!r}: cannot import {parts[1]}.{parts[2]} ({e})") from None
  if not callable(fn):
    raise ConfigError(f"{setting}={spec!r}: {parts[1]}.{parts[2]} is not callable")
  try:
    source = inspect.getsource(module)
  except (OSError, TypeError):
    source = repr(fn)
  fingerprint = hashlib.sha256(f"{spec}\n{source}".encode()).hexdigest()[:16]
  return fn, fingerprint, f"{parts[1]}.{parts[2]}"


def open_callable(spec: str, setting: str = "steal.target") -> Target:
  """``callable:MODULE:FUNCTION``: the function answers uint8 NHWC batches with features
  (its fingerprint is ``load_callable``'s: editing the function is a new target)."""
  fn, fingerprint, name = load_callable(spec, setting)
  dim = getattr(fn, "feature_dim", None)

  def features_fn(images):
    from stolen_jax.eaas import answers
    out = answers.call(fn, f"the target {name}", np.ascontiguousarray(images, np.uint8),
                       context=f" on a batch of {len(images)} images",
                       consequence="; nothing was paid").astype(np.float32)
    if out.ndim != 2 or len(out) != len(images):
      raise UserError(f"{name} answered shape {out.shape} for {len(images)} "
                      "images; it must return (N, D) features")
    return out
  meta = {"arch": f"callable:{name}", "kind": "callable", "fingerprint": fingerprint,
          "feature_dim": dim, "image_size": getattr(fn, "image_size", None)}
  return Target(meta, features_fn)
