"""The provider's defenses (§VII): perturb every answer of the API before it leaves.

Selected by ``config.defense.name`` and applied by ``eaas.QueryService`` to every answer —
the attacker's queries and the target's downstream probe alike (§VII: "the downstream
classifiers are also trained and tested using the perturbed feature vectors"):

* ``none``   the target's features as they are;
* ``topk``   keep the ``k`` features of largest absolute value, zero the rest (Table XIII);
* ``round``  round every feature to ``decimals`` decimals (Table XIV);
* ``noise``  add Gaussian (std ``scale``) or uniform ([-scale, scale]) noise (a common
             baseline of later work);
* ``poison`` feature poisoning, Eq. (10): with a shadow stolen encoder f'_s that the provider
             trains itself (Algorithm 1 on its own pretraining data with the attacker's
             settings d, λ, A), answer f_t(x) + δ where δ maximises
             d(f_t(x)+δ, f'_s(x)) + λ·d(f_t(x)+δ, f'_s(A(x))) s.t. ‖δ‖_p ≤ ε (p = 2 or ∞), by
             projected gradient ascent on device (``steps`` steps of ``step_size``; 0 = 2.5·ε/
             steps), keeping per example the best iterate, δ = 0 included;
* ``b4b``    Bucks for Buckets (Dubiński et al., NeurIPS 2023; ``eaas.b4b``): per-account
             Gaussian noise growing with the share of the embedding space (LSH buckets) the
             account's queries have covered — the attacker's surrogate set and the
             customer's downstream probe are separate accounts. Coverage lives in the
             service's memory, as on our HTTP server: a query stage resumed in a new process
             starts its account afresh.

Every defense is a pure jittable function of (features, per-image keys); the keys come from
each image's content, so an answer does not depend on how requests are batched and the
same image always gets the same answer (averaging repeated queries gains nothing).
"""

import dataclasses
import functools
import hashlib
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax import losses
from stolen_jax.errors import ConfigError, choose

DEFENSES = ("none", "topk", "round", "noise", "poison", "b4b")
NOISE_KINDS = ("gaussian", "uniform")
NORMS = ("l2", "linf")


def settings(cfg) -> dict:
  """The parameters that define the defense ``cfg`` (only those its kind uses): what keys
  the query cache and every stage that sees answers, and what the tables print."""
  if cfg is None or cfg.name == "none":
    return {"name": "none"}
  if str(cfg.name).startswith("callable:"):  # Keyed by its code: edited code, new answers.
    from stolen_jax import targets
    return {"name": cfg.name, "code": targets.load_callable(cfg.name, "defense.name")[1]}
  if cfg.name == "topk":
    return {"name": "topk", "k": int(cfg.k)}
  if cfg.name == "round":
    return {"name": "round", "decimals": int(cfg.decimals)}
  if cfg.name == "noise":
    return {"name": "noise", "noise": cfg.noise, "scale": float(cfg.scale), "seed": int(cfg.seed)}
  if cfg.name == "b4b":
    b = cfg.b4b
    return {"name": "b4b", "bits": int(b.bits), "scale": float(b.scale),
            "saturation": float(b.saturation), "power": float(b.power), "seed": int(cfg.seed)}
  return {"name": "poison", "epsilon": float(cfg.epsilon), "norm": cfg.norm,
          "steps": int(cfg.steps), "step_size": float(cfg.step_size), "seed": int(cfg.seed)}


def describe(cfg) -> str:
  """'topk(k=10)', 'none', ... for tables and logs."""
  s = settings(cfg)
  args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "name")
  return f"{s['name']}({args})" if args else s["name"]


def validate(cfg, feature_dim: Optional[int] = None) -> None:
  """One ConfigError for a bad defense parameter, before any stage runs."""
  if cfg is None:
    return
  if str(cfg.name).startswith("callable:"):  # A user's defense: (features, images) -> answers.
    from stolen_jax import targets
    targets.load_callable(cfg.name, "defense.name")
    return
  choose("defense.name", cfg.name, DEFENSES)
  if cfg.name == "topk":
    if not isinstance(cfg.k, int) or cfg.k < 1:
      raise ConfigError(f"defense.k={cfg.k!r} must be an integer >= 1")
    if feature_dim is not None and cfg.k > feature_dim:
      raise ConfigError(f"defense.k={cfg.k} exceeds the target's feature dimension {feature_dim}")
  elif cfg.name == "round":
    if not isinstance(cfg.decimals, int) or cfg.decimals < 0:
      raise ConfigError(f"defense.decimals={cfg.decimals!r} must be an integer >= 0")
  elif cfg.name == "noise":
    choose("defense.noise", cfg.noise, NOISE_KINDS)
    if not np.isfinite(cfg.scale) or cfg.scale < 0:
      raise ConfigError(f"defense.scale={cfg.scale} must be >= 0")
  elif cfg.name == "b4b":
    b = cfg.b4b
    if not isinstance(b.bits, int) or not 1 <= b.bits <= 24:
      raise ConfigError(f"defense.b4b.bits={b.bits!r} must be an integer in [1, 24]")
    for key in ("scale", "saturation", "power"):
      if not np.isfinite(b[key]) or b[key] < 0 or (key == "saturation" and b[key] == 0):
        raise ConfigError(f"defense.b4b.{key}={b[key]} must be a finite number "
                          f"{'> 0' if key == 'saturation' else '>= 0'}")
  elif cfg.name == "poison":
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


# ---------------------------------------------------------------------------------------
# Pure perturbations.

def topk(features: jax.Array, k: int) -> jax.Array:
  """Keeps the ``k`` entries of largest |value| in each row (exactly k), zeroes the rest."""
  _, idx = jax.lax.top_k(jnp.abs(features), k)
  mask = jnp.zeros(features.shape, bool).at[jnp.arange(features.shape[0])[:, None], idx].set(True)
  return jnp.where(mask, features, 0.0)


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


def add_noise(features: jax.Array, keys: jax.Array, kind: str, scale: float) -> jax.Array:
  """``features`` plus per-row noise drawn from each row's key."""
  draw = {"gaussian": lambda k: jax.random.normal(k, features.shape[1:]),
          "uniform": lambda k: jax.random.uniform(k, features.shape[1:], minval=-1.0, maxval=1.0)}[kind]
  return features + scale * jax.vmap(draw)(keys)


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


# ---------------------------------------------------------------------------------------
# Defenses as the service applies them.

def image_keys(seed: int, images: np.ndarray) -> jax.Array:
  """One PRNG key per image, from the image's bytes: the same image always draws the same
  randomness, however requests are batched."""
  ids = np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(im).tobytes(),
                                                 digest_size=4).digest(), "little")
                  for im in images], np.uint32)
  base = jax.random.PRNGKey(seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(ids))


@dataclasses.dataclass
class Defense:
  """A defense as the service applies it: ``defense(features, images) -> answers``
  (``per_account``: ``fn`` also takes the asking account, e.g. B4B's coverage)."""
  name: str
  settings: dict
  fn: Callable[..., np.ndarray]
  per_account: bool = False

  def __call__(self, features: np.ndarray, images: np.ndarray,
               account: str = "attacker") -> np.ndarray:
    if self.per_account:
      return np.asarray(self.fn(features, images, account), np.float32)
    return np.asarray(self.fn(features, images), np.float32)


def make(cfg, feature_dim: Optional[int] = None, shadow: Optional[dict] = None) -> Defense:
  """The defense of ``cfg`` (a ``config.defense`` block or None).

  ``shadow`` (poison only): {'features_fn': images -> f'_s(images), 'augment': (images, keys)
  -> A(images), 'distance', 'lambda_', 'normalize'} — the shadow stolen encoder and the
  attacker's settings it was trained with.
  """
  validate(cfg, feature_dim)
  s = settings(cfg)
  name = s["name"]
  if name == "none":
    return Defense("none", s, lambda f, images: f)
  if name.startswith("callable:"):
    return _user_defense(name, s)
  if name == "topk":
    fn = jax.jit(functools.partial(topk, k=s["k"]))
    return Defense(name, s, lambda f, images: fn(jnp.asarray(f)))
  if name == "round":
    return Defense(name, s, lambda f, images: round_features(jnp.asarray(f), s["decimals"]))
  if name == "noise":
    fn = jax.jit(functools.partial(add_noise, kind=s["noise"], scale=s["scale"]))
    return Defense(name, s, lambda f, images: fn(jnp.asarray(f), image_keys(s["seed"], images)))
  if name == "b4b":
    from stolen_jax.eaas import b4b as b4b_lib
    if feature_dim is None:
      raise ConfigError("defense 'b4b' needs the target's feature dimension")
    tracker = b4b_lib.B4B(feature_dim, b4b_lib.B4BConfig(
        bits=s["bits"], scale=s["scale"], saturation=s["saturation"], power=s["power"],
        seed=s["seed"]))
    return Defense(name, s, lambda f, images, account: tracker(account, f, images),
                   per_account=True)
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
  return Defense(name, s, poison)


def _user_defense(spec: str, s: dict) -> Defense:
  """``defense.name=callable:MODULE:FUNCTION``: the provider's own perturbation, a function
  (features (N, D) float32, images uint8) -> answers (N, D)."""
  from stolen_jax import targets
  from stolen_jax.eaas import answers
  fn, _, name = targets.load_callable(spec, "defense.name")
  return Defense(spec, s, lambda f, images: answers.call(
      fn, f"the defense {name}", np.asarray(f, np.float32), images))
