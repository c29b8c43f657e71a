import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_pretrain_block
from stolen_jax import augment as augment_lib, checkpoint, optim, parallel, pretrain, train_lib
from stolen_jax.errors import TrainingDiverged


def _params(path):
  state, meta = checkpoint.read(path)
  return state["params"], meta


def test_tiny_simclr_loss_falls(tmp_path):
  cfg = tiny_pretrain_block(epochs=10)
  summary = pretrain.train(cfg, str(tmp_path), seed=0)
  losses = [h["loss"] for h in summary["history"]]
  assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, losses
  assert summary["final_step"] == 10
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert any("loss" in l for l in lines)
  _, meta = _params(tmp_path)
  assert meta["arch"] == "resnet10" and meta["feature_dim"] == 32 and meta["num_images"] == 16


def test_resume_equals_uninterrupted(tmp_path):
  cfg = tiny_pretrain_block(epochs=2)
  pretrain.train(cfg, str(tmp_path / "straight"), seed=1)
  # "Killed" after epoch 1: a run that stopped there, then the same run started again.
  pretrain.train(tiny_pretrain_block(epochs=1), str(tmp_path / "resumed"), seed=1)
  summary = pretrain.train(cfg, str(tmp_path / "resumed"), seed=1)
  assert summary["resumed_from_step"] == 1 and summary["final_step"] == 2
  a, _ = _params(tmp_path / "straight")
  b, _ = _params(tmp_path / "resumed")
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _one_step(mesh, cfg):
  model = pretrain.build_model(cfg)
  tx = optim.make_optimizer(cfg)
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), sample, mesh)
  step = jax.jit(functools.partial(
      pretrain.simclr_step, model=model, tx=tx, temperature=0.5,
      augment=augment_lib.make_augment(cfg.augment, pretrain.augment_params(cfg))))
  images = np.random.default_rng(0).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
  state, metrics = step(state, {"images": parallel.put_sharded(images, mesh)})
  return state, metrics


def test_step_sharded_over_8_devices_equals_1(mesh1, mesh8):
  cfg = tiny_pretrain_block()
  s1, m1 = _one_step(mesh1, cfg)
  s8, m8 = _one_step(mesh8, cfg)
  assert len(s8.params["encoder"]["stem_conv"]["kernel"].sharding.device_set) == 8
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
  # Reduction order differs across 8 devices; after one Adam step at lr 1e-2, 1e-4 is 1% of a step.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         jax.device_get(s1.params), jax.device_get(s8.params))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         jax.device_get(s1.batch_stats), jax.device_get(s8.batch_stats))


def test_nan_loss_stops_with_clear_error(tmp_path, mesh1):
  # The guard lives in train_lib.fit: a tiny linear model whose loss turns NaN at step 3.
  def step(state, batch):
    loss = jnp.where(state.step >= 2, jnp.nan, jnp.mean(batch["x"] * state.params["w"]))
    return state.replace(step=state.step + 1), {"loss": loss}
  state = train_lib.TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.ones(())},
                               batch_stats={}, opt_state=(), rng=jax.random.PRNGKey(0))
  state = parallel.replicate_tree(state, mesh1)
  data = {"x": parallel.put_replicated(np.ones((8, 2), np.float32), mesh1)}
  writer = __import__("stolen_jax.metrics").metrics.Writer(str(tmp_path))
  with pytest.raises(TrainingDiverged, match="loss became nan at step 3"):
    train_lib.fit(state, step, data, num_examples=8, batch_size=4, epochs=3, seed=0, mesh=mesh1,
                  checkpoint_dir=str(tmp_path / "ckpt"), meta={}, writer=writer)


def test_knn_monitor_reports_accuracy(tmp_path):
  cfg = tiny_pretrain_block(epochs=1)
  cfg.knn.enabled = True
  cfg.knn.num_train, cfg.knn.num_test, cfg.knn.k = 64, 32, 5
  summary = pretrain.train(cfg, str(tmp_path), seed=0)
  assert 0.0 <= summary["knn_accuracy"] <= 1.0 and "knn_accuracy_init" in summary
