"""What a defense is: a perturbation the provider applies to every answer before it leaves.

A defense is a registered unit (``Kind``): its settings (what keys the query cache and every
stage that sees answers), its checks, and ``make`` turning the settings into a ``Defense``
the service calls as ``defense(features, images[, account]) -> answers``.
"""

import dataclasses
import hashlib
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Defense:
  """A defense as the service applies it: ``defense(features, images) -> answers``
  (``per_account``: ``fn`` also takes the asking account, e.g. B4B's coverage)."""
  name: str
  settings: dict
  fn: Callable[..., np.ndarray]
  per_account: bool = False
  out_dim: Optional[int] = None  # The answers' dimension when it is not the target's.

  def answer_dim(self, feature_dim: Optional[int]) -> Optional[int]:
    """The dimension of the answers for a target of ``feature_dim``."""
    return self.out_dim if self.out_dim is not None else feature_dim

  def __call__(self, features: np.ndarray, images: np.ndarray,
               account: str = "attacker") -> np.ndarray:
    if self.per_account:
      return np.asarray(self.fn(features, images, account), np.float32)
    return np.asarray(self.fn(features, images), np.float32)


@dataclasses.dataclass(frozen=True)
class Kind:
  """One registered defense (``defense.name=name``)."""
  name: str
  reference: str  # Where it comes from (the paper's table, the defense's paper).
  # (defense cfg) -> the settings that define its answers (only those it uses).
  settings: Callable[[Any], dict]
  # (defense cfg, feature_dim or None) -> None; one ConfigError for a bad parameter.
  validate: Callable[[Any, Optional[int]], None]
  # (settings, feature_dim, context) -> Defense; context: what the provider built for it
  # (the poisoning shadow encoder), None otherwise.
  make: Callable[[dict, Optional[int], Optional[dict]], Defense]
  # The provider trains something for it first (a keyed stage): its builder's name.
  needs: Optional[str] = None


def image_keys(seed: int, images: np.ndarray) -> jax.Array:
  """One PRNG key per image, from the image's bytes: the same image always draws the same
  randomness, however requests are batched."""
  ids = np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(im).tobytes(),
                                                 digest_size=4).digest(), "little")
                  for im in images], np.uint32)
  base = jax.random.PRNGKey(seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids))


def no_check(cfg, feature_dim=None) -> None:
  """A defense without parameters to check."""
