"""``topk``: keep the ``k`` features of largest absolute value, zero the rest (Table XIII)."""

import functools

import jax
import jax.numpy as jnp

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError


def topk(features: jax.Array, k: int) -> jax.Array:
  """Keeps the ``k`` entries of largest |value| in each row (exactly k), zeroes the rest."""
  _, idx = jax.lax.top_k(jnp.abs(features), k)
  mask = jnp.zeros(features.shape, bool).at[jnp.arange(features.shape[0])[:, None], idx].set(True)
  return jnp.where(mask, features, 0.0)


def _validate(cfg, feature_dim=None) -> None:
  if not isinstance(cfg.k, int) or cfg.k < 1:
    raise ConfigError(f"defense.k={cfg.k!r} must be an integer >= 1")
  if feature_dim is not None and cfg.k > feature_dim:
    raise ConfigError(f"defense.k={cfg.k} exceeds the target's feature dimension {feature_dim}")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  fn = jax.jit(functools.partial(topk, k=s["k"]))
  return Defense("topk", s, lambda f, images: fn(jnp.asarray(f)))


KIND = Kind("topk", "StolenEncoder §VII-A, Table XIII",
            lambda cfg: {"name": "topk", "k": int(cfg.k)}, _validate, _make)
