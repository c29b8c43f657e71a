"""The field's encoder-stealing attacks, each a registered name for ``steal.attack``.

Where each attack's objective lives (its query plan is beside it, ``base.Attack``):

* ``stolenencoder`` — ``stolenencoder.steal_step``: L1 + λ·L2, d = ℓ2/ℓ1/cos; |D| queries;
* ``conventional`` — ``conventional.loss``: MSE of normalised features; |D|;
* ``dziedzic_infonce`` — ``dziedzic.infonce_loss``: NT-Xent over [f_s; f_t]; |D|;
* ``dziedzic_softnn`` — ``dziedzic.softnn_loss``: soft nearest neighbours; |D|;
* ``contsteal`` — ``contsteal.loss``: contrastive against augmented views' answers; V·|D|;
* ``rda`` — ``rda.prototypes`` (refine) and ``rda.loss`` (discriminate + align); V·|D|.

The generic trainer (``steal.trainer``) runs every attack through the same metered API
(``steal.query``), defenses, checkpoints, probes and sweeps. A new attack is one module with
an ``Attack`` and a line in ``REGISTRY``.
"""

from stolen_jax.attacks import contsteal, conventional, dziedzic, rda, stolenencoder
from stolen_jax.attacks.base import Attack
from stolen_jax.errors import ConfigError

DEFAULT = "stolenencoder"
REGISTRY: dict[str, Attack] = {a.name: a for a in (
    stolenencoder.ATTACK, conventional.ATTACK, dziedzic.INFONCE, dziedzic.SOFTNN,
    contsteal.ATTACK, rda.ATTACK)}


def get(name: str) -> Attack:
  """The attack registered as ``name`` (one clear error naming the choices otherwise)."""
  if name not in REGISTRY:
    raise ConfigError(f"unknown steal.attack {name!r}; valid choices: {', '.join(REGISTRY)}")
  return REGISTRY[name]


def block_of(cfg, attack: Attack):
  """The attack's hyperparameter block ``steal.<name>`` (its defaults when absent)."""
  import ml_collections
  return cfg.get(attack.name) or ml_collections.ConfigDict(dict(attack.params))


def settings(cfg, attack: Attack) -> dict:
  """The attack's hyperparameters as recorded in stage keys and summaries."""
  return dict(block_of(cfg, attack).to_dict()) if attack.params else {}


__all__ = ["Attack", "REGISTRY", "DEFAULT", "get", "block_of", "settings"]
