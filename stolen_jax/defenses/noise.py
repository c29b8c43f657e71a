"""``noise``: Gaussian (std ``scale``) or uniform ([-scale, scale]) noise on every answer, drawn
from each image's own key (a common baseline of later work)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax.defenses.base import Defense, Kind, image_keys
from stolen_jax.errors import ConfigError, choose

NOISE_KINDS = ("gaussian", "uniform")


def add_noise(features: jax.Array, keys: jax.Array, kind: str, scale: float) -> jax.Array:
  """``features`` plus per-row noise drawn from each row's key."""
  draw = {"gaussian": lambda k: jax.random.normal(k, features.shape[1:]),
          "uniform": lambda k: jax.random.uniform(k, features.shape[1:], minval=-1.0, maxval=1.0)}[kind]
  return features + scale * jax.vmap(draw)(keys)


def _validate(cfg, feature_dim=None) -> None:
  choose("defense.noise", cfg.noise, NOISE_KINDS)
  if not np.isfinite(cfg.scale) or cfg.scale < 0:
    raise ConfigError(f"defense.scale={cfg.scale} must be >= 0")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  fn = jax.jit(functools.partial(add_noise, kind=s["noise"], scale=s["scale"]))
  return Defense("noise", s, lambda f, images: fn(jnp.asarray(f), image_keys(s["seed"], images)))


KIND = Kind("noise", "additive noise, the baseline of later work (e.g. B4B's comparisons)",
            lambda cfg: {"name": "noise", "noise": cfg.noise, "scale": float(cfg.scale),
                         "seed": int(cfg.seed)}, _validate, _make)
