"""``defense.name=callable:MODULE:FUNCTION``: the provider's own perturbation, a function
(features (N, D) float32, images uint8) -> answers (N, D), keyed by its code (edited code,
new answers)."""

import numpy as np

from stolen_jax.defenses.base import Defense

PREFIX = "callable:"


def settings(spec: str) -> dict:
  """The user's defense's settings: its spec and its code's fingerprint."""
  from stolen_jax import targets
  return {"name": spec, "code": targets.load_callable(spec, "defense.name")[1]}


def validate(spec: str) -> None:
  """One clear error when the function cannot be loaded."""
  from stolen_jax import targets
  targets.load_callable(spec, "defense.name")


def make(s: dict) -> Defense:
  """The user's function as a Defense; a function that raises or returns non-numbers gets
  one error naming it."""
  from stolen_jax import targets
  from stolen_jax.eaas import answers
  spec = s["name"]
  fn, _, name = targets.load_callable(spec, "defense.name")
  return Defense(spec, s, lambda f, images: answers.call(
      fn, f"the defense {name}", np.asarray(f, np.float32), images))
