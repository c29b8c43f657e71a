"""Sybil accounts (``steal.sybils=N``): the attacker splits its surrogate set across N
accounts of the API, as B4B's paper models an adversary against per-account defenses.

Account 0 (the reference) answers its share of the surrogate set; each other account k
answers its own share plus the ``steal.sybil_mapping`` mapping images that account 0 also
answered (the first of its share). Each account's answers live in that account's space (B4B
maps every account's answers with its own secret transformation), so the attacker fits, per
account k, an affine map from k's answers of the mapping images to account 0's (ridge
regression, closed form) and trains on every answer carried into account 0's space. Every
query of every account is paid and counted: |D| + (N − 1)·M in all, each account's own
bill and budget in its own log, durably cached per account so a rerun pays nothing.

B4B's own code trains a small network per sybil for this mapping; an affine map is exact
for its affine and shuffle-and-pad transformations (and the first thing to try against any
other), so that is what this attacker fits.
"""

import dataclasses
import os
import time

import numpy as np

from stolen_jax import eaas
from stolen_jax.errors import ConfigError

RIDGE = 1e-6  # Relative to the mean square of the inputs: a guard against singular maps.


def shares(n: int, accounts: int, mapping: int) -> list[np.ndarray]:
  """The surrogate indices each account queries: account 0 its share, account k ≥ 1 the
  mapping images (the first ``mapping`` of account 0's share) then its own share."""
  parts = np.array_split(np.arange(n), accounts)
  if mapping > len(parts[0]):
    raise ConfigError(f"steal.sybil_mapping={mapping} exceeds the {len(parts[0])} images of "
                      f"account 0's share ({n} surrogate images over {accounts} accounts)")
  common = parts[0][:mapping]
  return [parts[0]] + [np.concatenate([common, p]) for p in parts[1:]]


def fit_map(source: np.ndarray, reference: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
  """W of the affine map [source, 1] @ W ≈ reference (ridge-regularised least squares)."""
  x = np.concatenate([source, np.ones((len(source), 1), source.dtype)], 1).astype(np.float64)
  scale = max(float(np.mean(x * x)), 1e-12)
  return np.linalg.solve(x.T @ x + ridge * scale * len(x) * np.eye(x.shape[1]),
                         x.T @ reference.astype(np.float64))


def apply_map(w: np.ndarray, source: np.ndarray) -> np.ndarray:
  """The affine map ``w`` applied to ``source``."""
  x = np.concatenate([source, np.ones((len(source), 1), source.dtype)], 1)
  return (x.astype(np.float64) @ w).astype(np.float32)


@dataclasses.dataclass
class Accounts:
  """The sybil accounts as one service for the steal's summary: queries summed over them."""
  services: list

  @property
  def queries_used(self) -> int:
    return int(sum(s.queries_used for s in self.services))


def api_keys(cfg, accounts: int) -> list[str]:
  """The sybils' keys for an HTTP API: ``steal.api_keys`` (or STOLEN_JAX_API_KEYS), one per
  account, comma-separated."""
  spec = cfg.get("api_keys") or os.environ.get("STOLEN_JAX_API_KEYS") or ""
  keys = [k.strip() for k in str(spec).split(",") if k.strip()]
  if len(keys) != accounts or len(set(keys)) != accounts:
    raise ConfigError(f"steal.sybils={accounts} against an HTTP API needs {accounts} distinct "
                      f"keys in steal.api_keys (or STOLEN_JAX_API_KEYS), comma-separated; "
                      f"got {len(keys)}{' (repeated)' if len(set(keys)) != len(keys) else ''}")
  return keys


def open_accounts(op, accounts: int) -> list:
  """One metered service per account: in process, the same target and defense under each
  account's name; over HTTP, one client per key (each its own bill and budget on the server,
  its own log here)."""
  if op.http is not None:
    from stolen_jax.eaas.client import HTTPService
    services = [HTTPService(op.cfg.target, key) for key in api_keys(op.cfg, accounts)]
    for k, s in enumerate(services):
      s.attach_log(os.path.join(op.query_stage.dir, f"api_queries_sybil{k}.jsonl"))
    return services
  return [eaas.QueryService(op.target.features_fn, defense=op.defense, account=f"sybil{k}",
                            log_path=os.path.join(op.query_stage.dir, f"queries_sybil{k}.jsonl"))
          for k in range(accounts)]


def query(op, requests, seed: int):
  """The sybil plan's answers, carried into account 0's space. Returns (target features,
  Accounts, caches, paid before, seconds, per-account bills)."""
  cfg = op.cfg
  n, k_accounts, mapping = len(op.surrogate), int(cfg.sybils), int(cfg.sybil_mapping)
  if len(requests) != 1:
    raise ConfigError("steal.sybils > 1 takes attacks that buy one answer per image (not a "
                      "plan of augmented views)")
  _, pixels, key = requests[0]
  parts = shares(n, k_accounts, mapping)
  services = open_accounts(op, k_accounts)
  caches = [eaas.FeatureCache(op.query_stage.dir, f"sybil{k}", len(idx),
                              {**key, "images": eaas.cache.fingerprint(pixels[idx]), "account": k},
                              keyed_directory=True) for k, idx in enumerate(parts)]
  needed = int(sum((~c.answered).sum() for c in caches))
  total = sum(len(p) for p in parts)
  spent = total - needed
  if cfg.query_budget is not None and total > cfg.query_budget:
    raise eaas.QueryBudgetExceeded(
        f"the sybil plan needs {total} queries (|D| = {n} over {k_accounts} accounts + "
        f"{k_accounts - 1} × {mapping} mapping images) but steal.query_budget="
        f"{cfg.query_budget}; nothing was queried")
  t0 = time.perf_counter()
  dim = op.defense.answer_dim(op.target.meta.get("feature_dim"))
  answers = []
  for k, (s, idx, c) in enumerate(zip(services, parts, caches)):
    if hasattr(s, "key_prefix"):  # Idempotency keys scoped to the account's images.
      s.key_prefix = f"{c.key['images']}-sybil{k}-"
    answers.append(eaas.query_with_cache(s, pixels[idx], c, cfg.query_batch_size, feature_dim=dim))
  out = np.zeros((n, answers[0].shape[1]), np.float32)
  out[parts[0]] = answers[0]
  reference = answers[0][:mapping]
  fit_error = []
  for k in range(1, k_accounts):
    w = fit_map(answers[k][:mapping], reference)
    own = parts[k][mapping:]
    out[own] = apply_map(w, answers[k][mapping:])
    residual = apply_map(w, answers[k][:mapping]) - reference
    fit_error.append(float(np.sqrt(np.mean(residual ** 2)) /
                           max(float(np.sqrt(np.mean(reference ** 2))), 1e-12)))
  bills = []
  for k, (s, idx) in enumerate(zip(services, parts)):
    bill = {"account": f"sybil{k}", "queries": len(idx)}
    if callable(getattr(s, "account", None)):  # The API's own bill of this key (HTTP).
      a = s.account()
      bill.update(api_account=a["name"], api_used=a["used"], api_cost=a["cost"])
    bills.append(bill)
  return out, Accounts(services), caches, spent, time.perf_counter() - t0, {
      "accounts": bills, "mapping": mapping, "mapping_relative_error": fit_error}
