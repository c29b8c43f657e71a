"""``job='verify'``: was this suspect encoder stolen from my victim encoder?

Each method is a registered unit (one module each, like ``attacks/`` and ``defenses/``):

* ``dataset_inference`` — Dziedzic et al. (NeurIPS 2022): the suspect's representations of
  the victim's private training data vs a public held-out set, under a density model of the
  victim's representations (scikit-learn GMM, scipy t-test);
* ``fidelity`` — per-dimension agreement with the victim on public images, against the
  suspect's own coordinates relabelled at random;
* ``answer_watermark`` — the provider watermarked its answers (``defense.name=
  answer_watermark``); the suspect's shift toward the secret direction on trigger inputs,
  against decoy directions;
* ``encoder_watermark`` — the victim itself carries a secret watermark task (SSLGuard-style,
  its own keyed stage, ``job=watermark``); the suspect queried on the secret inputs only.

The job (``verify.job``) opens both encoders, pays for the suspect's answers once per image
set, runs each method that applies, corrects for testing several (Bonferroni-Holm) and
writes ``verify/<key>/summary.json``; the last line it prints is the verdict.
"""

from stolen_jax.errors import ConfigError
from stolen_jax.verify import answer_watermark, dataset_inference, encoder_watermark, fidelity
from stolen_jax.verify.base import Context, Method, Outcome

REGISTRY: dict[str, Method] = {m.name: m for m in (
    dataset_inference.METHOD, fidelity.METHOD, answer_watermark.METHOD,
    encoder_watermark.METHOD)}


def get(name: str) -> Method:
  """The method registered as ``name`` (one clear error naming the choices otherwise)."""
  if name not in REGISTRY:
    raise ConfigError(f"unknown verify method {name!r}; valid choices: {', '.join(REGISTRY)}")
  return REGISTRY[name]


def parse_methods(spec) -> list[str]:
  """'auto' (every method that applies) or a comma-separated list of names."""
  if spec in (None, "", "auto"):
    return ["auto"]
  names = [n.strip() for n in str(spec).split(",") if n.strip()]
  for n in names:
    get(n)
  return names


__all__ = ["REGISTRY", "get", "parse_methods", "Context", "Method", "Outcome"]
