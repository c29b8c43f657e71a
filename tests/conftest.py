"""Test setup: 8 fake CPU devices (data-parallel paths) and a shared compilation cache."""

import os
import tempfile

# Must be set before JAX initializes its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("STOLEN_JAX_CACHE_DIR", os.path.join(tempfile.gettempdir(), "stolen_jax_test_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import ml_collections  # noqa: E402
import pytest  # noqa: E402

from stolen_jax import defaults, parallel, runtime  # noqa: E402

runtime.enable_compilation_cache()


@pytest.fixture(scope="session")
def mesh1():
  return parallel.make_mesh(jax.devices()[:1])


@pytest.fixture(scope="session")
def mesh8():
  assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices (XLA_FLAGS)"
  return parallel.make_mesh(jax.devices())


def tiny_pretrain_block(**overrides) -> ml_collections.ConfigDict:
  """A SimCLR block small enough for CPU tests: width-1/16 ResNet-10 at 16 px."""
  p = defaults.pretrain_block()
  # Tests share these shapes and this learning rate, so the compiled step is reused from the
  # persistent compilation cache instead of being compiled again for each test.
  p.dataset = "embedded:shapes"
  p.num_examples = 16
  p.image_size = 16
  p.arch, p.width = "resnet10", 0.0625
  p.proj_hidden, p.proj_dim = 32, 16
  p.epochs, p.batch_size = 2, 16
  p.lr = 1e-2
  p.knn.enabled = False
  p.checkpoint_every_epochs = 1
  p.log_every_steps = 1
  for k, v in overrides.items():
    p[k] = v
  return p


def tiny_steal_config(target: str, **overrides) -> ml_collections.ConfigDict:
  """A steal config small enough for CPU tests against the checkpoint ``target``."""
  config = defaults.base_config("steal")
  config.pretrain = tiny_pretrain_block()
  s = config.steal = defaults.steal_block()
  s.target = target
  s.surrogate, s.surrogate_split, s.heldout_split = "embedded:textures", "train", "test"
  s.surrogate_size = 32
  s.image_size = 16
  s.arch, s.width = "resnet10", 0.0625
  s.epochs, s.batch_size = 2, 16
  s.optimizer, s.lr, s.weight_decay = "adam", 1e-2, 0.0  # Tiny tests were tuned with Adam.
  s.query_batch_size = 16
  s.eval_heldout = 0
  s.checkpoint_every_epochs = 1
  s.log_every_steps = 1
  for k, v in overrides.items():
    s[k] = v
  return config


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory):
  """A tiny SimCLR target encoder checkpoint, trained once per test session."""
  from stolen_jax import pretrain
  workdir = tmp_path_factory.mktemp("target")
  pretrain.train(tiny_pretrain_block(epochs=2), str(workdir), seed=0)
  return str(workdir)


@pytest.fixture(scope="session")
def tiny_moco_target(tmp_path_factory):
  """A tiny MoCo target (12 steps) and its run summary, trained once per test session."""
  from stolen_jax import pretrain
  workdir = tmp_path_factory.mktemp("moco_target")
  cfg = tiny_pretrain_block(method="moco", epochs=12)
  cfg.moco.queue_size, cfg.moco.bn_groups = 16, 4
  return str(workdir), pretrain.train(cfg, str(workdir), seed=0)
