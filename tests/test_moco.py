
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_pretrain_block
from stolen_jax import moco, parallel, pretrain, train_lib
from stolen_jax.errors import ConfigError


def test_moco_loss_hand_computed():
  q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  k = jnp.array([[0.6, 0.8], [0.0, 1.0]])
  queue = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])
  t = 0.2
  expected = []
  for i in range(2):
    logits = np.array([q[i] @ k[i]] + [q[i] @ n for n in queue]) / t
    expected.append(-(logits[0] - np.log(np.sum(np.exp(logits)))))
  assert float(moco.moco_loss(q, k, queue, t)) == pytest.approx(np.mean(expected), rel=1e-6)


def test_queue_replaces_oldest_and_wraps():
  queue = jnp.zeros((6, 2))
  ptr = jnp.zeros((), jnp.int32)
  for step in range(4):
    queue, ptr = moco.enqueue(queue, ptr, jnp.full((2, 2), step + 1.0))
  # Steps 1,2,3 filled slots 0-5; step 4 overwrote the oldest (slots 0-1).
  np.testing.assert_array_equal(queue[:, 0], [4, 4, 2, 2, 3, 3])
  assert int(ptr) == 2


def test_ema_semantics():
  target = {"w": jnp.array([1.0, 2.0])}
  online = {"w": jnp.array([3.0, 6.0])}
  np.testing.assert_allclose(moco.ema(target, online, 0.9)["w"], [1.2, 2.4])
  np.testing.assert_allclose(moco.ema(target, online, 1.0)["w"], [1.0, 2.0])


def _moco_cfg(**kw):
  cfg = tiny_pretrain_block(method="moco", **kw)
  cfg.moco.queue_size, cfg.moco.bn_groups = 64, 4
  return cfg


def _state_and_step(cfg, mesh):
  model, tx, step_fn = pretrain.make_trainer(cfg, 10)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), mesh,
                                 extra=pretrain.initial_extra(cfg, 0))
  return state, jax.jit(step_fn)


def test_moco_step_updates_queue_and_momentum_encoder(mesh1):
  cfg = _moco_cfg()
  state, step = _state_and_step(cfg, mesh1)
  key_before = jax.device_get(state.extra["key_params"])
  queue_before = np.asarray(state.extra["queue"])
  images = np.random.default_rng(0).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
  new, metrics = step(state, {"images": images})
  assert np.isfinite(float(metrics["loss"]))
  assert int(new.extra["queue_ptr"]) == 16
  np.testing.assert_array_equal(new.extra["queue"][16:], queue_before[16:])
  np.testing.assert_allclose(np.linalg.norm(new.extra["queue"][:16], axis=-1), 1.0, rtol=1e-5)
  # f_m moved 1% of the way to the updated f.
  expected = moco.ema(key_before, jax.device_get(new.params), 0.99)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         expected, jax.device_get(new.extra["key_params"]))


def test_tiny_moco_run_loss_falls(tiny_moco_target):
  _, summary = tiny_moco_target
  losses_ = [h["loss"] for h in summary["history"]]
  # Step 1 contrasts against the random initial queue (an easy, low loss); from step 2 on
  # the queue holds real keys, and from there the loss must fall.
  assert np.mean(losses_[-3:]) < np.mean(losses_[1:4]) - 0.1, losses_


def test_moco_step_sharded_equals_unsharded(mesh1, mesh8):
  cfg = _moco_cfg()
  images = np.random.default_rng(1).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8)
  outs = []
  for mesh in (mesh1, mesh8):
    state, step = _state_and_step(cfg, mesh)
    new, metrics = step(state, {"images": parallel.put_sharded(images, mesh)})
    outs.append(jax.device_get((new.params, new.extra, metrics)))
  # Reduction order differs across 8 devices; after one Adam step at lr 1e-2, 1e-4 is 1% of a step.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *outs)


def test_queue_must_be_a_multiple_of_the_batch():
  cfg = _moco_cfg()
  cfg.moco.queue_size = 50
  with pytest.raises(ConfigError, match="multiple"):
    pretrain.initial_extra(cfg, 0)
