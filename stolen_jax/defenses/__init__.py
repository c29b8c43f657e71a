"""The provider's defenses (§VII): perturb every answer of the API before it leaves.

Each defense is a registered unit (one module, a ``Kind``), chosen by ``config.defense.name``
and applied by ``eaas.QueryService`` and the HTTP server to every answer — the attacker's
queries and the target's downstream probe alike (§VII: "the downstream classifiers are also
trained and tested using the perturbed feature vectors"):

* ``none``   the target's features as they are;
* ``topk``   (``topk``) keep the ``k`` features of largest |value|, zero the rest (Table XIII);
* ``round``  (``rounding``) round every feature to ``decimals`` decimals (Table XIV);
* ``noise``  (``noise``) Gaussian (std ``scale``) or uniform ([-scale, scale]) noise;
* ``poison`` (``poison``) feature poisoning, Eq. (10), against the provider's shadow stolen
             encoder (``shadow``: its own keyed stage, trained on the provider's data);
* ``b4b``    (``b4b``) Bucks for Buckets: per-account noise growing with the share of the
             embedding space the account's queries have covered;
* ``answer_watermark`` (``answer_watermark``) answers to images that correlate with a secret
             pattern pulled toward a secret direction (EmbMarker-style), so that theft can
             be proven later (``stolen_jax.verify``);
* ``callable:MODULE:FUNCTION`` (``user``) the provider's own function.

Every defense is a function of (features, images) whose randomness comes from each image's
content, so an answer does not depend on how requests are batched and the same image always
gets the same answer (averaging repeated queries gains nothing). A new defense is one module
with a ``KIND`` and a line in ``REGISTRY``.
"""

from typing import Optional

from stolen_jax.defenses import answer_watermark, b4b, noise, poison, rounding, topk, user
from stolen_jax.defenses.base import Defense, Kind, image_keys, no_check
from stolen_jax.errors import ConfigError, choose

NONE = Kind("none", "no defense", lambda cfg: {"name": "none"}, no_check,
            lambda s, feature_dim=None, context=None: Defense("none", s, lambda f, images: f))
REGISTRY: dict[str, Kind] = {k.name: k for k in (
    NONE, topk.KIND, rounding.KIND, noise.KIND, poison.KIND, b4b.KIND, answer_watermark.KIND)}
DEFENSES = tuple(REGISTRY)


def _is_user(cfg) -> bool:
  return str(cfg.name).startswith(user.PREFIX)


def get(name: str) -> Kind:
  """The defense registered as ``name`` (one clear error naming the choices otherwise)."""
  choose("defense.name", name, DEFENSES + ("callable:MODULE:FUNCTION",))
  return REGISTRY[name]


def settings(cfg) -> dict:
  """The parameters that define the defense ``cfg`` (only those its kind uses): what keys
  the query cache and every stage that sees answers, and what the tables print."""
  if cfg is None or cfg.name == "none":
    return {"name": "none"}
  if _is_user(cfg):
    return user.settings(cfg.name)
  return get(cfg.name).settings(cfg)


def describe(cfg) -> str:
  """'topk(k=10)', 'none', ... for tables and logs."""
  s = settings(cfg)
  args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "name")
  return f"{s['name']}({args})" if args else s["name"]


def validate(cfg, feature_dim: Optional[int] = None) -> None:
  """One ConfigError for a bad defense parameter, before any stage runs."""
  if cfg is None:
    return
  if _is_user(cfg):
    user.validate(cfg.name)
    return
  get(cfg.name).validate(cfg, feature_dim)


def make(cfg, feature_dim: Optional[int] = None, context: Optional[dict] = None) -> Defense:
  """The defense of ``cfg`` (a ``config.defense`` block or None); ``context``: what the
  provider trained for it (poison: its shadow encoder, ``shadow.train_shadow``'s result)."""
  validate(cfg, feature_dim)
  s = settings(cfg)
  if _is_user(cfg):
    return user.make(s)
  return REGISTRY[s["name"]].make(s, feature_dim, context)


def build(config, workdir: str, target, mesh) -> Defense:
  """The provider's defense of ``config.defense`` for ``target`` (poison: with its shadow
  encoder, trained here as a keyed stage if not yet)."""
  dcfg = config.get("defense")
  feature_dim = target.meta.get("feature_dim")
  validate(dcfg, feature_dim)
  context = None
  if dcfg is not None and not _is_user(dcfg) and REGISTRY[dcfg.name].needs == "shadow":
    from stolen_jax.defenses import shadow  # Imports the attacker's trainer: only when needed.
    context = shadow.train_shadow(config, workdir, target, mesh)
  return make(dcfg, feature_dim, context)


__all__ = ["Defense", "Kind", "REGISTRY", "DEFENSES", "get", "settings", "describe", "validate",
           "make", "build", "image_keys"]
