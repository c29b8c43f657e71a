"""The registered attacks: their losses against straightforward reimplementations of the
papers' code, their exact query counts (in process and through the HTTP API), that each
fits a target better than a random encoder, and that StolenEncoder's stage keys are the
ones workdirs made before attacks were registered."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import tiny_steal_config
from stolen_jax import attacks, defaults, stages, steal
from stolen_jax.attacks import contsteal, dziedzic, rda
from stolen_jax.eaas import QueryBudgetExceeded
from stolen_jax.errors import ConfigError

ALL = sorted(attacks.REGISTRY)


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _block(**kw):
  return ml_collections.ConfigDict(kw)


def _ref_consteal(x, y, t):
  """ShuchiWu/RDA's ConStealLoss (masks and exp, as in its code): x the anchors' partners,
  y the anchors, with y–y negatives."""
  n = len(x)
  sim1, sim2 = np.exp(x @ y.T / t), np.exp(y @ y.T / t)
  mask = ~np.eye(n, dtype=bool)
  l_pos = np.exp(np.sum(x * y, -1) / t)
  l_neg = sim1[mask].reshape(n, -1).sum(-1) + sim2[mask].reshape(n, -1).sum(-1)
  return np.mean(-np.log(l_pos / l_neg))


def test_contsteal_loss_matches_the_reference_formula():
  rng = np.random.default_rng(0)
  s = rng.normal(size=(8, 5)).astype(np.float32)
  t = rng.normal(size=(8, 1, 5)).astype(np.float32)
  got, _ = contsteal.loss(jnp.asarray(s)[None], jnp.asarray(t), jax.random.PRNGKey(0),
                          _block(temperature=0.5))
  want = _ref_consteal(_normalize(t[:, 0]), _normalize(s), 0.5)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_rda_loss_matches_the_reference_formula():
  rng = np.random.default_rng(1)
  views = rng.normal(size=(3, 8, 5)).astype(np.float32)
  answers = rng.normal(size=(8, 4, 5)).astype(np.float32)
  block = _block(temperature=0.5, alpha=1.0, beta=0.5)
  protos = np.asarray(rda.prototypes(answers, block))
  np.testing.assert_allclose(protos, _normalize(answers).mean(1), rtol=1e-5, atol=1e-7)
  got, parts = rda.loss(jnp.asarray(views), jnp.asarray(protos), None, block)
  total = 0.0
  for v in views:  # RDA.py's OurLoss, the surrogate's view x against its prototype y.
    x, y = _normalize(v), protos
    n = len(x)
    mask = ~np.eye(n, dtype=bool)
    sim1, sim2 = np.exp(x @ y.T / 0.5), np.exp(x @ x.T / 0.5)
    l_pos = np.exp(np.sum(x * y, -1) / 0.5)
    l_neg = sim1[mask].reshape(n, -1).sum(-1) + sim2[mask].reshape(n, -1).sum(-1)
    contrast = np.mean(-np.log(l_pos / l_neg))
    cos = np.sum(x * y, -1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))
    align = np.mean(-np.log((cos + 1) / np.sum((x - y) ** 2, -1)))
    total += 1.0 * contrast + 0.5 * align
  np.testing.assert_allclose(got, total / len(views), rtol=1e-4)
  assert set(parts) == {"discriminate", "align"}


def test_dziedzic_losses_match_the_reference_formulas():
  rng = np.random.default_rng(2)
  s = rng.normal(size=(6, 4)).astype(np.float32)
  t = rng.normal(size=(6, 4)).astype(np.float32)
  # InfoNCE as simclr.py's info_nce_loss + CrossEntropy: positives first, then negatives.
  f = _normalize(np.concatenate([s, t]))
  sim = f @ f.T / 0.1
  n = len(f)
  ce = []
  for i in range(n):
    pos = (i + 6) % n
    others = [j for j in range(n) if j != i]
    logits = sim[i, others]
    ce.append(-sim[i, pos] + np.log(np.sum(np.exp(logits))))
  got, _ = dziedzic.infonce_loss(jnp.asarray(s)[None], jnp.asarray(t), None, _block(temperature=0.1))
  np.testing.assert_allclose(got, np.mean(ce), rtol=1e-5)
  # Soft nearest neighbours as loss.py's soft_nn_loss (labels arange(B) twice).
  f = np.concatenate([s, t]).astype(np.float64)
  d = ((f[:, None] - f[None]) ** 2).sum(-1) / 3.0
  e = np.exp(-d) * (1 - np.eye(n))
  labels = np.concatenate([np.arange(6), np.arange(6)])
  pos = (labels[:, None] == labels[None]) & ~np.eye(n, dtype=bool)
  want = -np.mean(np.log((e * pos).sum(1) / e.sum(1)))
  got, _ = dziedzic.softnn_loss(jnp.asarray(s)[None], jnp.asarray(t), None, _block(temperature=3.0))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_stolenencoder_stage_keys_are_the_ones_made_before_attacks_were_registered():
  # Keys computed by the single-module steal.py (commit 2fd23ad) for its default settings
  # (then Adam 1e-3): registering attacks must not move a StolenEncoder stage's key, so
  # existing workdirs' finished stages are still found.
  pinned = {"demo": "cd4b363c48", "cpu": "5a3955584d", "paper": "9e59c69c20"}
  for scale, key in pinned.items():
    config = defaults.scaled_config(scale)
    config.steal.optimizer, config.steal.lr, config.steal.weight_decay = "adam", 1e-3, 0.0
    assert stages.key_of(steal.steal_settings(config)) == key
  # Another attack's key holds its name and hyperparameters, not StolenEncoder's λ or d.
  config = defaults.scaled_config("demo")
  config.steal.attack = "contsteal"
  settings = steal.steal_settings(config)
  assert settings["attack"] == {"name": "contsteal", "views": 4, "temperature": 0.07}
  assert "lambda_" not in settings and "distance" not in settings
  other = defaults.scaled_config("demo")
  other.steal.attack, other.steal.contsteal.views = "contsteal", 2
  assert stages.key_of(steal.steal_settings(other)) != stages.key_of(settings)


def test_unknown_attack_and_bad_settings_are_one_clear_error(tiny_target, tmp_path):
  with pytest.raises(ConfigError, match="valid choices: stolenencoder"):
    steal.run(tiny_steal_config(tiny_target, attack="cont_steal"), str(tmp_path))
  config = tiny_steal_config(tiny_target, attack="rda")
  config.steal.rda.prototype_views = 0
  with pytest.raises(ConfigError, match="steal.rda.prototype_views=0"):
    steal.run(config, str(tmp_path))
  with pytest.raises(ConfigError, match="StolenEncoder variant"):
    steal.run(tiny_steal_config(tiny_target, attack="conventional", variant="query_aug"),
              str(tmp_path))
  assert not list(tmp_path.glob("query/*/queries.jsonl"))  # Nothing paid.


def _attack_config(target, name, **overrides):
  config = tiny_steal_config(target, attack=name, **overrides)
  if name == "contsteal":
    config.steal.contsteal.views = 2
  if name == "rda":
    config.steal.rda.prototype_views, config.steal.rda.student_views = 3, 2
  return config


EXPECTED_VIEWS = {"stolenencoder": 1, "conventional": 1, "dziedzic_infonce": 1,
                  "dziedzic_softnn": 1, "contsteal": 2, "rda": 3}


@pytest.mark.parametrize("name", ALL)
def test_each_attack_pays_exactly_its_plan_and_fits_better_than_a_random_encoder(
    tiny_target, tmp_path, name):
  config = _attack_config(tiny_target, name, epochs=16, eval_heldout=64)
  first = steal.run(config, str(tmp_path))
  assert first["attack"] == name
  assert first["queries"] == 32 * EXPECTED_VIEWS[name] == first["queries_this_run"]
  assert first["query_views"] == (0 if EXPECTED_VIEWS[name] == 1 else EXPECTED_VIEWS[name])
  assert first["train_gflops"] > 0
  heldout = first["heldout"]
  assert heldout["stolen_cosine"] > heldout["random_cosine"] + 0.05, heldout
  assert "failed" not in first
  again = steal.run(config, str(tmp_path))
  assert again["restored"] and again["queries"] == first["queries"]
  # A budget below the plan is refused before the first query.
  short = _attack_config(tiny_target, name, query_budget=32 * EXPECTED_VIEWS[name] - 1)
  with pytest.raises(QueryBudgetExceeded):
    steal.run(short, str(tmp_path / "short"))
  assert not list((tmp_path / "short").glob("query/*/*.jsonl"))


def test_every_attack_pays_exactly_through_the_http_api(tiny_target, tmp_path):
  pytest.importorskip("httpx")
  from test_serve import ThreadServer, target_api
  app, ledger, key = target_api(tiny_target, tmp_path)
  with ThreadServer(app) as url:
    for name in ALL:
      remote = steal.run(_attack_config(url, name, api_key=key, epochs=1), str(tmp_path / name))
      assert remote["queries"] == 32 * EXPECTED_VIEWS[name]
      assert remote["api_used"] == ledger.authenticate(key).used
      if name in ("rda", "conventional"):  # The same answers as in process: the same training.
        local = steal.run(_attack_config(tiny_target, name, epochs=1), str(tmp_path / f"{name}_local"))
        np.testing.assert_allclose(remote["final_loss"], local["final_loss"], rtol=1e-4)
    # A rerun against the API pays nothing more.
    steal.run(_attack_config(url, "rda", api_key=key, epochs=1), str(tmp_path / "rda"))
  # The server bills each distinct request once (the client's idempotency key is the images'
  # fingerprint): the clean surrogate set once for the four one-answer attacks, Cont-Steal's
  # two views, and of RDA's three views the one Cont-Steal did not already buy (a plan's
  # v-th view is the same images for every attack of the same seed).
  assert ledger.authenticate(key).used == 32 + 2 * 32 + 32


def _load_config(path, scale):
  from test_configs import ROOT, _load
  return _load(os.path.join(ROOT, path), scale)


def test_attacks_x_defenses_cells_pay_equal_budgets_at_every_scale():
  from stolen_jax import jobs, sweep
  for scale in ("demo", "cpu", "paper"):
    config = _load_config("configs/paper/attacks_x_defenses.py", scale)
    cells = sweep.cells(config)
    assert {c["steal.attack"] for c in cells} == set(attacks.REGISTRY)
    assert {c["defense.name"] for c in cells} == {"none", "topk", "round", "noise", "poison", "b4b"}
    budgets = set()
    for c in cells:
      cell = sweep.cell_config(config, c, 0)
      jobs.validate(cell)  # Every cell is a valid run (batch ≤ images, known names).
      views = max(1, steal.attack_settings(cell.steal)["query_views"])
      budgets.add(cell.steal.surrogate_size * views)
    # Equal budgets, up to the rounding of budget // views.
    assert len({b // 10 for b in budgets}) == 2, budgets


def test_the_adaptive_adversary_cells_pay_the_same_budget():
  """Sybil cells (2 and 5 accounts against B4B) pay |D| + (N − 1)·M = the budget, and the
  recovering cells are the same attacks with ``steal.recover=auto``."""
  from stolen_jax import jobs, sweep
  config = _load_config("configs/paper/attacks_x_defenses.py",
                        "demo,budgets=512,defenses=none|b4b,sybils=2|5,recover=auto")
  cells = sweep.cells(config)
  sybil_cells = [c for c in cells if c["steal.sybils"] > 1]
  assert {c["steal.sybils"] for c in sybil_cells} == {2, 5}
  assert {c["steal.attack"] for c in sybil_cells} == {
      "stolenencoder", "conventional", "dziedzic_infonce", "dziedzic_softnn"}
  for c in sybil_cells:
    assert c["defense.name"] == "b4b"
    assert c["steal.surrogate_size"] + (c["steal.sybils"] - 1) * c["steal.sybil_mapping"] == 512
    jobs.validate(sweep.cell_config(config, c, 0))
  recovering = [c for c in cells if c["steal.recover"] == "auto"]
  assert len(recovering) == len(attacks.REGISTRY) and all(
      c["defense.name"] == "b4b" for c in recovering)


def test_attacks_x_defenses_options_pick_a_part_and_refuse_bad_ones():
  """``attacks=`` keeps only the named attacks; an unknown attack, option or recover value is
  one clear error before anything runs."""
  from stolen_jax import sweep
  config = _load_config("configs/paper/attacks_x_defenses.py",
                        "demo,budgets=512,defenses=none|b4b,attacks=stolenencoder|rda")
  cells = sweep.cells(config)
  assert {c["steal.attack"] for c in cells} == {"stolenencoder", "rda"}
  assert len(cells) == 4
  twins = sweep.cells(_load_config(
      "configs/paper/attacks_x_defenses.py",
      "demo,budgets=512,defenses=none|b4b|noise,attacks=stolenencoder|rda,scaling=standardize"))
  scaled = [c for c in twins if c["steal.answer_scaling"] == "standardize"]
  # StolenEncoder's cells without a defense and against B4B, each with a standardised twin.
  assert [(c["steal.attack"], c["defense.name"]) for c in scaled] == [
      ("stolenencoder", "none"), ("stolenencoder", "b4b")]
  assert len(twins) == 2 * 3 + 2
  for bad, says in (("demo,attacks=nosuch", "nosuch"), ("demo,recover=yes", "recover=auto"),
                    ("demo,scaling=raw", "scaling=standardize"),
                    ("demo,colour=red", "bad option"), ("huge", "unknown scale")):
    with pytest.raises((ValueError, ConfigError), match=says):
      _load_config("configs/paper/attacks_x_defenses.py", bad)


def test_attacks_x_defenses_table_runs_at_tiny_size(tmp_path):
  """The table's sweep at tiny size: one row per cell, equal budgets, the cost columns
  filled, the grid plot written."""
  from test_probe import tiny_probe_block
  from conftest import tiny_pretrain_block
  from stolen_jax import jobs
  config = _load_config("configs/paper/attacks_x_defenses.py", "demo")
  tiny = tiny_steal_config(None, epochs=1, eval_heldout=16)
  for key in ("image_size", "arch", "width", "lr", "query_batch_size", "checkpoint_every_epochs",
              "log_every_steps", "surrogate", "surrogate_split", "heldout_split", "epochs",
              "eval_heldout"):
    config.steal[key] = tiny.steal[key]
  config.steal.contsteal.views = 2
  config.steal.rda.prototype_views, config.steal.rda.student_views = 2, 2
  config.pretrain = tiny_pretrain_block(epochs=1)
  config.probe = tiny_probe_block(epochs=1)
  config.defense.shadow.epochs, config.defense.shadow.num_examples = 1, 16
  config.defense.shadow.batch_size = 16
  config.defense.steps = 2
  config.defense.b4b.bits = 4
  # The kinds of cell the table has: one-answer and view plans, a plain perturbation, the
  # poisoning defense (its shadow stage) and the per-account one (each defense and attack
  # alone has its own tests; this is the sweep over both axes).
  picked = [("stolenencoder", "none"), ("dziedzic_softnn", "round"), ("contsteal", "poison"),
            ("rda", "b4b")]
  views = {a: 2 if a in ("contsteal", "rda") else 1 for a in attacks.REGISTRY}
  config.sweep.axes = "; ".join([
      "steal.attack=" + ",".join(a for a, _ in picked),
      "steal.surrogate_size=" + ",".join(str(64 // views[a]) for a, _ in picked),
      "steal.batch_size=" + ",".join("16" for _ in picked),
      "defense.name=" + ",".join(d for _, d in picked)])
  jobs.run(config, str(tmp_path))
  rows = json.load(open(tmp_path / "results.json"))["rows"]
  assert len(rows) == len(picked)
  assert all(r["queries"] == 64 for r in rows)  # Equal budgets: 64 images, or 32 × 2 views.
  assert all(r["train_gflops"] > 0 and r["heldout_cosine"] is not None for r in rows)
  assert not any(r["failed"] for r in rows if r["defense.name"] == "none")
  table = open(tmp_path / "results.md").read()
  assert "held-out cos" in table and "GFLOPs" in table and "rda" in table
  assert (tmp_path / "results.png").exists() and "![SA per cell](results.png)" in table


def test_b4b_answers_each_account_apart(tiny_target):
  from stolen_jax import defenses, eaas, parallel
  target = steal.open_target(tiny_target, parallel.make_mesh())
  config = defaults.defense_block()
  # Noise that reaches α = 0.5 at 5% coverage, and no transformation: errors comparable.
  config.name, config.b4b.bits, config.b4b.beta, config.b4b.alpha = "b4b", 6, 5.0, 0.5
  config.b4b.transform = "none"
  defense = defenses.make(config, target.meta["feature_dim"])
  images = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
  attacker = eaas.QueryService(target.features_fn, defense=defense)
  customer = eaas.QueryService(target.features_fn, defense=defense, account="customer")
  clean = np.asarray(target.features_fn(images))
  broad = attacker.query(images)
  first = customer.query(images[:1])
  # The attacker's history does not reach the customer: its first answer is the one a fresh
  # service gives a first query, while the attacker's later answers carry more noise.
  fresh = eaas.QueryService(target.features_fn, defense=defenses.make(config, target.meta["feature_dim"]),
                            account="customer").query(images[:1])
  np.testing.assert_array_equal(first, fresh)
  err = lambda a, b: float(np.mean(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))
  assert err(broad[-8:], clean[-8:]) > 2 * err(first, clean[:1])
  assert defense.settings["name"] == "b4b"
