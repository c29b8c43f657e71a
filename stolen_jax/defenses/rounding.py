"""``round``: every feature rounded to ``decimals`` decimals (Table XIV)."""

import jax
import jax.numpy as jnp

from stolen_jax.defenses.base import Defense, Kind
from stolen_jax.errors import ConfigError


@jax.jit
def _round_scaled(features: jax.Array, scale: jax.Array) -> jax.Array:
  return jnp.round(features * scale) / scale


def round_features(features: jax.Array, decimals: int) -> jax.Array:
  """Every feature rounded to ``decimals`` decimals (half to even), exactly as numpy: the
  integer n = round(x·10^m) divided by 10^m, the float nearest n/10^m.

  Measured here: XLA:CPU's division is exact in a compiled function whose divisor is an
  argument, but not op by op or by a compile-time constant (it becomes a multiplication by
  the inexact 0.1); so 10^m is passed to one jitted function as an argument.
  """
  return _round_scaled(features, jnp.asarray(10.0 ** decimals, features.dtype))


def _validate(cfg, feature_dim=None) -> None:
  if not isinstance(cfg.decimals, int) or cfg.decimals < 0:
    raise ConfigError(f"defense.decimals={cfg.decimals!r} must be an integer >= 0")


def _make(s: dict, feature_dim=None, context=None) -> Defense:
  return Defense("round", s, lambda f, images: round_features(jnp.asarray(f), s["decimals"]))


KIND = Kind("round", "StolenEncoder §VII-B, Table XIV",
            lambda cfg: {"name": "round", "decimals": int(cfg.decimals)}, _validate, _make)
