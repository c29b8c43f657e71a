"""Targets behind a network API: our own (``http(s)://``) and any other (``api:ADAPTER``)."""

import os

from stolen_jax import defenses
from stolen_jax.errors import ConfigError
from stolen_jax.targets import Target, kind


def open_remote(cfg):
  """(Target, defense, service) of a remote target: the model's description comes from the
  API (or the adapter's declaration); its defense, if any, runs on the provider's side."""
  if kind(cfg.target) == "adapter":
    from stolen_jax.eaas.adapter import AdapterService, load_adapter
    service = AdapterService(load_adapter(cfg.target[len("api:"):]), budget=cfg.query_budget)
  else:
    from stolen_jax.eaas.client import HTTPService
    key = cfg.get("api_key") or os.environ.get("STOLEN_JAX_API_KEY")
    if not key and int(cfg.get("sybils", 1)) > 1:  # A sybil steal: its first key reads /model.
      from stolen_jax.steal.sybil import api_keys
      key = api_keys(cfg, int(cfg.sybils))[0]
    service = HTTPService(cfg.target, key)
  meta = service.model()
  if (cfg.image_size and meta.get("image_size") and meta.get("image_size") != cfg.image_size
      and kind(cfg.target) == "http"):
    raise ConfigError(f"the API serves {meta.get('image_size')}-px images; set "
                      f"steal.image_size={meta.get('image_size')}")
  server_defense = meta.get("defense") or {"name": "none"}
  defense = defenses.Defense(server_defense.get("name", "none"), server_defense, lambda f, im: f)
  target = Target({**meta, "fingerprint": meta.get("fingerprint", cfg.target)}, None)
  return target, defense, service
