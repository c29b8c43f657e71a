"""``poison``: feature poisoning, Eq. (10) (§VII-C).

With a shadow stolen encoder f'_s that the provider trains itself (``defenses.shadow``:
Algorithm 1 on its own pretraining data with the attacker's settings d, λ, A), answer
f_t(x) + δ where δ maximises d(f_t(x)+δ, f'_s(x)) + λ·d(f_t(x)+δ, f'_s(A(x))) s.t.
‖δ‖_p ≤ ε (p = 2 or ∞), by projected gradient ascent on device (``steps`` steps of
``step_size``; 0 = 2.5·ε/steps), keeping per example the best iterate, δ = 0 included.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax import losses
from stolen_jax.defenses.base import Defense, Kind, image_keys
from stolen_jax.errors import ConfigError, choose

NORMS = ("l2", "linf")


def project(delta: jax.Array, epsilon: float, norm: str) -> jax.Array:
  """Projection of each row onto the ℓ_p ball of radius ``epsilon``."""
  if norm == "linf":
    return jnp.clip(delta, -epsilon, epsilon)
  n = jnp.sqrt(jnp.sum(jnp.square(delta), -1, keepdims=True))
  return delta * jnp.minimum(1.0, epsilon / jnp.maximum(n, 1e-12))


def poison_objective(delta, target, shadow_clean, shadow_aug, *, distance: str, lambda_: float,
                     normalize: bool) -> jax.Array:
  """Eq. (10)'s objective per row: d(f_t+δ, f'_s(x)) + λ·d(f_t+δ, f'_s(A(x))), with the
  attacker's feature normalisation."""
  prep = losses.l2_normalize if normalize else (lambda f: f)
  d = losses.DISTANCES[distance]
  answer = prep(target + delta)
  return d(answer, prep(shadow_clean)) + lambda_ * d(answer, prep(shadow_aug))


def poison_perturbation(target, shadow_clean, shadow_aug, keys, *, distance: str, lambda_: float,
                        normalize: bool, epsilon: float, norm: str, steps: int,
                        step_size: float) -> jax.Array:
  """δ per row by projected gradient ascent on Eq. (10) under ‖δ‖_p ≤ ε.

  Starts from a random point of the ball (row keys), steps along the normalised gradient
  (ℓ2) or its sign (ℓ∞), projects, and returns per row the best iterate seen, δ = 0 and
  the start included: the result never does worse than no perturbation.
  """
  objective = functools.partial(poison_objective, target=target, shadow_clean=shadow_clean,
                                shadow_aug=shadow_aug, distance=distance, lambda_=lambda_,
                                normalize=normalize)
  step = step_size if step_size > 0 else 2.5 * epsilon / steps
  start = jax.vmap(lambda k: jax.random.uniform(k, target.shape[1:], minval=-1.0, maxval=1.0))(keys)
  start = project(start * epsilon, epsilon, norm)
  zero = jnp.zeros_like(target)
  best, best_value = zero, objective(zero)
  value = objective(start)
  best = jnp.where((value > best_value)[:, None], start, best)
  best_value = jnp.maximum(value, best_value)
  grad_fn = jax.grad(lambda d: jnp.sum(objective(d)))

  def body(_, carry):
    delta, best, best_value = carry
    g = grad_fn(delta)
    if norm == "linf":
      delta = delta + step * jnp.sign(g)
    else:
      delta = delta + step * g / jnp.maximum(jnp.sqrt(jnp.sum(g * g, -1, keepdims=True)), 1e-12)
    delta = project(delta, epsilon, norm)
    value = objective(delta)
    better = value > best_value
    return delta, jnp.where(better[:, None], delta, best), jnp.where(better, value, best_value)

  _, best, _ = jax.lax.fori_loop(0, steps, body, (start, best, best_value))
  return best


def _validate(cfg, feature_dim=None) -> None:
  choose("defense.norm", cfg.norm, NORMS)
  if not np.isfinite(cfg.epsilon) or cfg.epsilon < 0:
    raise ConfigError(f"defense.epsilon={cfg.epsilon} must be >= 0")
  if not isinstance(cfg.steps, int) or cfg.steps < 1:
    raise ConfigError(f"defense.steps={cfg.steps!r} must be an integer >= 1")
  if not np.isfinite(cfg.step_size) or cfg.step_size < 0:
    raise ConfigError(f"defense.step_size={cfg.step_size} must be >= 0 (0: 2.5·ε/steps)")
  shadow = cfg.get("shadow") or {}
  for key in ("epochs", "batch_size"):
    value = shadow.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
      raise ConfigError(f"defense.shadow.{key}={value!r} must be an integer >= 1 "
                        "(unset: the attacker's)")


def _settings(cfg) -> dict:
  return {"name": "poison", "epsilon": float(cfg.epsilon), "norm": cfg.norm,
          "steps": int(cfg.steps), "step_size": float(cfg.step_size), "seed": int(cfg.seed)}


def _make(s: dict, feature_dim=None, shadow=None) -> Defense:
  """``shadow``: {'features_fn': images -> f'_s(images), 'augment': (images, keys) -> A(images),
  'distance', 'lambda_', 'normalize', 'stage_key'} — the shadow stolen encoder and the
  attacker's settings it was trained with."""
  if shadow is None:
    raise ConfigError("defense 'poison' needs the provider's shadow stolen encoder")
  perturb = jax.jit(functools.partial(
      poison_perturbation, distance=shadow["distance"], lambda_=float(shadow["lambda_"]),
      normalize=bool(shadow["normalize"]), epsilon=s["epsilon"], norm=s["norm"],
      steps=s["steps"], step_size=s["step_size"]))

  def poison(f, images):
    keys = image_keys(s["seed"], images)
    aug_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    clean = shadow["features_fn"](images)
    views = np.asarray(shadow["augment"](images, aug_keys))
    augmented = shadow["features_fn"](views)
    f = jnp.asarray(f)
    return f + perturb(f, jnp.asarray(clean), jnp.asarray(augmented), keys)
  # The answers depend on the shadow encoder too: its stage key joins the settings that key
  # the query cache and stage, so another shadow never reuses these answers.
  if shadow.get("stage_key"):
    s = {**s, "shadow": shadow["stage_key"]}
  return Defense("poison", s, poison)


KIND = Kind("poison", "StolenEncoder §VII-C, Eq. (10), Table XV", _settings, _validate, _make,
            needs="shadow")
