import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_steal_config
from stolen_jax import augment as augment_lib, optim, parallel, pretrain, steal, train_lib
from stolen_jax.eaas import QueryBudgetExceeded
from stolen_jax.errors import ConfigError


def test_steal_pays_surrogate_size_once_and_rerun_pays_zero(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target)
  s1 = steal.run(config, str(tmp_path))
  assert s1["queries"] == 32 and s1["queries_this_run"] == 32
  assert s1["final_step"] == 2 * (32 // 16)
  assert s1["normalize_features"] is True and s1["reduction"] == "mean"
  # A rerun of a finished steal: no new query, no new training.
  s2 = steal.run(config, str(tmp_path))
  assert s2["queries"] == 32 and s2["restored"]
  assert s2["stage_dir"] == s1["stage_dir"] and s2["final_step"] == s1["final_step"]


def test_query_aug_pays_e_plus_one_times_d(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target, variant="query_aug", epochs=3, surrogate_size=32)
  summary = steal.run(config, str(tmp_path))
  assert summary["queries"] == (3 + 1) * 32


def test_budget_too_small_fails_before_training(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target, query_budget=24)
  with pytest.raises(QueryBudgetExceeded):
    steal.run(config, str(tmp_path))
  # The budget is checked for the whole surrogate set before the first query: nothing paid.
  assert not list(tmp_path.glob("query/*/queries.jsonl"))


def test_surrogate_size_as_fraction_of_target_set(tiny_target):
  assert steal.surrogate_count(0.5, {"num_images": 64}) == 32
  assert steal.surrogate_count(7, {}) == 7
  with pytest.raises(ConfigError):
    steal.surrogate_count(0.5, {})


def test_missing_target_is_a_config_error(tmp_path):
  config = tiny_steal_config(None)
  with pytest.raises(ConfigError, match="steal.target is required"):
    steal.run(config, str(tmp_path))


def test_tiny_steal_fits_the_target(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target, epochs=24, eval_heldout=64)
  summary = steal.run(config, str(tmp_path))
  l1 = [h["l1"] for h in summary["history"]]
  assert l1[-1] < l1[0] / 2, l1
  heldout = summary["heldout"]
  assert heldout["stolen_l2_normalized"] < 0.5 * heldout["random_l2_normalized"], heldout
  assert heldout["stolen_cosine"] > heldout["random_cosine"]


@pytest.mark.parametrize("variant_batch", ["standard", "query_aug"])
def test_steal_step_sharded_equals_unsharded(mesh1, mesh8, variant_batch):
  config = tiny_steal_config("unused")
  cfg = config.steal
  rng = np.random.default_rng(0)
  batch = {"images": rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
           "target": rng.normal(size=(16, 32)).astype(np.float32)}
  if variant_batch == "query_aug":
    batch["images_aug"] = rng.uniform(size=(16, 16, 16, 3)).astype(np.float32)
    batch["target_aug"] = rng.normal(size=(16, 32)).astype(np.float32)
  results = []
  for mesh in (mesh1, mesh8):
    model = steal.build_stolen_model(cfg)
    tx = optim.make_optimizer(cfg)
    state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), mesh)
    step = jax.jit(functools.partial(
        steal.steal_step, model=model, tx=tx, lambda_=20.0, distance="l2", reduction="mean",
        normalize=True, bn_passes="separate",
        augment=augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))))
    state, metrics = step(state, {k: parallel.put_sharded(v, mesh) for k, v in batch.items()})
    results.append((jax.device_get(state.params), jax.device_get(metrics)))
  (p1, m1), (p8, m8) = results
  for k in m1:
    np.testing.assert_allclose(m1[k], m8[k], rtol=1e-5)
  # Reduction order differs across 8 devices; after one Adam step at lr 1e-2, 1e-4 is 1% of a step.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), p1, p8)


def test_steal_moco_target_with_another_architecture(tiny_moco_target, tmp_path):
  # Table V is a config change: a ResNet-18 (64-d at width 1/8) steals a MoCo ResNet-10
  # (32-d); a linear output layer maps the stolen features to the target's dimension.
  from stolen_jax import checkpoint
  target_dir, _ = tiny_moco_target
  config = tiny_steal_config(target_dir, epochs=1, arch="resnet18", width=0.125)
  summary = steal.run(config, str(tmp_path))
  assert summary["stolen_arch"] == "resnet18" and summary["queries"] == 32
  _, target_meta = checkpoint.read(target_dir)
  encoder, _, stolen_meta = checkpoint.restore_encoder(summary["stage_dir"])
  assert target_meta["method"] == "moco" and target_meta["feature_dim"] == 32
  assert stolen_meta["feature_dim"] == 32 and encoder.feature_dim == 32


def test_one_pass_grouped_batchnorm_equals_two_separate_passes(mesh8):
  # bn_passes='separate' runs both views in one vmapped pass with per-view statistics; it must
  # equal the official two-pass computation: loss, gradients (hence params) and running stats.
  # Under SGD, so parameters differ only by the rounding of their gradients (Adam's update
  # can flip the sign of a ~0 gradient's step between two summation orders, on some CPUs).
  config = tiny_steal_config("unused")
  cfg = config.steal
  cfg.optimizer, cfg.lr, cfg.momentum = "sgd", 0.05, 0.9
  rng = np.random.default_rng(1)
  batch = {"images": rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
           "target": rng.normal(size=(16, 32)).astype(np.float32)}
  model = steal.build_stolen_model(cfg)
  tx = optim.make_optimizer(cfg)
  out = []
  for one_pass in (True, False):
    state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), mesh8)
    step = jax.jit(functools.partial(
        steal.steal_step, model=model, tx=tx, lambda_=20.0, distance="l2", reduction="mean",
        normalize=True, bn_passes="separate", one_pass=one_pass,
        augment=augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))))
    for _ in range(2):  # Two steps: the second reads the composed running statistics.
      state, metrics = step(state, {k: parallel.put_sharded(v, mesh8) for k, v in batch.items()})
    out.append(jax.device_get((state.params, state.batch_stats, metrics)))
  (p1, s1, m1), (p2, s2, m2) = out
  for k in m1:
    np.testing.assert_allclose(m1[k], m2[k], rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: _close_to_scale(a, b, 1e-4), p1, p2)
  jax.tree_util.tree_map(lambda a, b: _close_to_scale(a, b, 1e-5), s1, s2)


def test_query_aug_budget_is_checked_for_all_epochs_before_the_first_query(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target, variant="query_aug", epochs=3, query_budget=3 * 32)
  with pytest.raises(QueryBudgetExceeded, match=r"\(e\+1\)·\|D\| = 128"):
    steal.run(config, str(tmp_path))
  assert not list(tmp_path.glob("query/*/queries.jsonl"))


def _stacked_and_single_runs(cfg, mesh1, steps):
  """Two cells (λ and d differ) trained ``steps`` steps as one vmapped program, and each
  trained alone: after every step the stacked (state, metrics), and per cell the single
  run's (state, metrics)."""
  rng = np.random.default_rng(2)
  batches = [{"images": jnp.asarray(rng.integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)),
              "target": jnp.asarray(rng.normal(size=(16, 32)).astype(np.float32))}
             for _ in range(steps)]
  sample = jnp.zeros((1, 16, 16, 3))
  keys = [jax.random.PRNGKey(1), jax.random.PRNGKey(2)]
  lambdas, distances = (5.0, 20.0), ("l2", "cosine")
  _, _, stacked_step, init = steal.make_stacked_trainer(cfg, lambdas, 10, distances=distances)
  states = init(keys, sample, mesh1)
  step = jax.jit(stacked_step)
  stacked = []
  for b in batches:
    states, metrics = step(states, b)
    stacked.append(jax.device_get((states, metrics)))
  singles = []
  for k, (lam, dist) in enumerate(zip(lambdas, distances)):
    with cfg.unlocked():
      cfg.lambda_, cfg.distance = lam, dist
    model, tx, single = steal.make_trainer(cfg, 10)
    state = train_lib.create_state(model, tx, keys[k], sample, mesh1)
    single = jax.jit(single)
    runs = []
    for b in batches:
      state, metrics = single(state, b)
      runs.append(jax.device_get((state, metrics)))
    singles.append(runs)
  return stacked, singles


def _close_to_scale(a, b, rel):
  """``a`` equals ``b`` up to ``rel`` of their largest magnitude: what a vectorised and a
  plain program may differ by when they sum in other orders (rounding of the largest terms,
  not relative to each element, which may be a cancellation near zero)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)), 1e-30)
  np.testing.assert_allclose(a, b, rtol=0, atol=rel * scale)


def test_stacked_cells_equal_single_runs(mesh1):
  # The stacked program computes each cell's loss and gradient as the single run does. The
  # two sum in other orders (vmapped and plain convolutions), so they agree to rounding, and
  # rounding grows with every step: compared after each of three SGD steps with a bound that
  # grows with them (Intel and AMD CPUs round differently), which still fails when a cell
  # gets another cell's λ, d, key or gradient (differences of several percent).
  cfg = tiny_steal_config("unused").steal
  cfg.optimizer, cfg.lr, cfg.momentum = "sgd", 0.05, 0.9
  stacked, singles = _stacked_and_single_runs(cfg, mesh1, steps=3)
  for k, runs in enumerate(singles):
    for step, ((states, smetrics), (state, metrics)) in enumerate(zip(stacked, runs)):
      rel = 1e-5 * 10 ** step  # 1e-5 after the first step, 1e-3 after the third.
      np.testing.assert_allclose(smetrics["loss"][k], metrics["loss"], rtol=rel)
      jax.tree_util.tree_map(lambda a, b: _close_to_scale(a[k], b, rel), states.params,
                             state.params)


def test_stacked_cells_take_the_single_runs_first_adam_step(mesh1):
  # Adam divides each gradient by its own magnitude, so a parameter whose gradient is ~0 in
  # both programs may move ±lr in one and not in the other: parameters are no fair comparison
  # after an Adam step across CPUs. Its moments are (the gradient and its square).
  cfg = tiny_steal_config("unused").steal
  stacked, singles = _stacked_and_single_runs(cfg, mesh1, steps=1)
  (states, smetrics), = stacked
  for k, ((state, metrics),) in enumerate(singles):
    np.testing.assert_allclose(smetrics["loss"][k], metrics["loss"], rtol=1e-5)
    jax.tree_util.tree_map(lambda a, b: _close_to_scale(a[k], b, 1e-4),
                           states.opt_state, state.opt_state)
