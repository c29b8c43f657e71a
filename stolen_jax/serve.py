"""``job='serve'``: the target encoder as a metered HTTP API, and its key administration.

  python -m stolen_jax.main --config=configs/serve.py --config.serve.checkpoint=PATH
  python -m stolen_jax.main --config=configs/serve.py --config.serve.action=add_key \\
      --config.serve.name=alice --config.serve.budget=5000
  python -m stolen_jax.main --config=configs/serve.py --config.serve.action=list_keys
  python -m stolen_jax.main --config=configs/serve.py --config.serve.action=revoke_key \\
      --config.serve.name=alice

The API applies ``config.defense`` to every answer; the ledger is SQLite in the workdir.
"""

import os

from stolen_jax import parallel, stages
from stolen_jax.errors import ConfigError, choose

ACTIONS = ("serve", "add_key", "list_keys", "revoke_key")


def ledger_path(config, workdir: str) -> str:
  return config.serve.ledger or os.path.join(workdir, "ledger.sqlite")


def build_app(config, workdir: str, mesh=None):
  """The FastAPI app serving ``serve.checkpoint`` with the config's defense and ledger."""
  from stolen_jax import defenses, steal
  from stolen_jax.eaas import ledger as ledger_lib, server
  cfg = config.serve
  if not cfg.checkpoint:
    raise ConfigError("serve.checkpoint is required: the target encoder's checkpoint path "
                      "(or import:NAME:PATH, callable:MODULE:FUNCTION)")
  mesh = mesh or parallel.make_mesh()
  target = steal.open_target(cfg.checkpoint, mesh, cfg.feature_batch_size, cfg.get("max_weights_gb"))
  defense = defenses.build(config, workdir, target, mesh)
  meta = target.meta
  ledger = ledger_lib.Ledger(ledger_path(config, workdir))
  b4b = None
  if cfg.b4b.enabled:
    from stolen_jax.defenses import b4b as b4b_lib
    b4b_lib.validate_block(cfg.b4b, "serve.b4b")
    b4b = b4b_lib.B4B(int(meta["feature_dim"]), b4b_lib.config_of(cfg.b4b, cfg.b4b.seed),
                      secret_of=ledger.secret)  # Each key's own secret, kept in the ledger.
  return server.make_app(
      target.features_fn, ledger, image_size=int(meta["image_size"]),
      feature_dim=int(meta["feature_dim"]), defense=defense,
      model_info={"fingerprint": meta["fingerprint"], "arch": meta.get("arch"),
                  "num_images": meta.get("num_images"), "defense": defense.settings},
      batch_window_ms=cfg.batch_window_ms, max_batch=cfg.max_batch,
      max_body_bytes=int(cfg.max_body_mb * 2 ** 20), b4b=b4b,
      max_image_pixels=int(cfg.max_image_pixels), max_request_pixels=int(cfg.max_request_pixels),
      burst_s=float(cfg.burst_s))


def run(config, workdir: str) -> dict:
  """Serves the API, or runs one key-administration action."""
  from stolen_jax.eaas import ledger as ledger_lib, server
  cfg = config.serve
  choose("serve.action", cfg.action, ACTIONS)
  os.makedirs(workdir, exist_ok=True)
  if cfg.action == "serve":
    app = build_app(config, workdir)
    print(f"serving {cfg.checkpoint} on http://{cfg.host}:{cfg.port} (docs: /docs; ledger "
          f"{ledger_path(config, workdir)})", flush=True)
    server.serve(app, cfg.host, cfg.port)
    return {"served": True}
  ledger = ledger_lib.Ledger(ledger_path(config, workdir))
  try:
    if cfg.action == "add_key":
      if cfg.budget is None and not cfg.unlimited:
        raise ConfigError("add_key needs serve.budget (the account's queries, e.g. "
                          "--config.serve.budget=1000) or, for an account without a limit, "
                          "--config.serve.unlimited=True")
      if cfg.budget is not None and cfg.unlimited:
        raise ConfigError("give serve.budget or serve.unlimited=True, not both")
      key = ledger.add_key(cfg.name, cfg.budget, cfg.price_per_1000, cfg.rate_per_s)
      print(f"API key for {cfg.name!r} (shown once; only its hash is stored): {key}")
      return {"name": cfg.name}
    if cfg.action == "revoke_key":
      n = ledger.revoke(cfg.name)
      if not n:
        raise ConfigError(f"no account named {cfg.name!r} (nor one whose key hash starts with "
                          f"it; list_keys shows names and hashes)")
      print(f"revoked {n} key(s) of {cfg.name!r}")
      return {"revoked": n}
    rows = [{**a.public(), "key_hash": a.key_hash[:16]} for a in ledger.accounts()]
    for a in rows:
      print(", ".join(f"{k}={v}" for k, v in a.items()))
    return {"accounts": rows}
  finally:
    ledger.close()


__all__ = ["run", "build_app", "stages"]
