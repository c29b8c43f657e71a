import sys

import jax
import jax.numpy as jnp
import pytest

from stolen_jax import models
from stolen_jax.errors import ConfigError


@pytest.mark.parametrize("name,expected_m,dim", [
    ("resnet18", 11.17, 512), ("resnet34", 21.28, 512), ("resnet50", 23.51, 2048),
    ("vgg19", 20.02, 512), ("vgg19_bn", 20.04, 512), ("densenet121", 6.95, 1024),
    ("mobilenetv2", 2.22, 1280), ("shufflenetv2", 1.25, 1024)])
def test_full_width_parameter_counts(name, expected_m, dim):
  # Computed abstractly (eval_shape, no FLOPs). Table V: ResNet34 21.3M, VGG19(_bn) 20.0M,
  # ResNet18 11.2M, DenseNet121 7.5M, MobileNetV2 4.0M, ShuffleNetV2 1.8M; the models'
  # docstrings explain the differences over 10%.
  model = models.get(name)
  count = models.param_count(model) / 1e6
  assert count == pytest.approx(expected_m, abs=0.01)
  assert model.feature_dim == dim
  table = models.TABLE_V_PARAMS_M.get(name)
  if table is not None and abs(count - table) / table > 0.10:
    assert "Table V" in sys.modules[type(model).__module__].__doc__


# ResNet-10 and ResNet-18 run forward (and backward) in the trainer tests.
@pytest.mark.parametrize("name", [n for n in models.names() if n not in ("resnet10", "resnet18")])
def test_tiny_forward_shapes(name):
  model = models.get(name, width=0.125)
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32, 3))

  @jax.jit  # One compilation for init and a train-mode forward (the slow part on CPU).
  def init_and_forward(x):
    variables = model.init(jax.random.PRNGKey(0), x[:1])
    return model.apply(variables, x, train=True, mutable=["batch_stats"])

  y, updates = init_and_forward(x)
  assert y.shape == (4, model.feature_dim) and bool(jnp.all(jnp.isfinite(y)))
  assert float(jnp.std(y[:, :])) > 0
  assert bool(updates.get("batch_stats")) == (name != "vgg19")


def test_unknown_arch_names_choices():
  with pytest.raises(ConfigError, match="resnet18"):
    models.get("resnet19")


def test_vgg_rejects_images_too_small():
  with pytest.raises(ConfigError, match="32x32"):
    jax.eval_shape(lambda: models.get("vgg19", width=0.125).init(jax.random.PRNGKey(0),
                                                                 jnp.zeros((1, 16, 16, 3))))


def test_linear_output_matches_target_dim():
  model = models.get("resnet10", width=0.0625, out_dim=48)
  assert model.feature_dim == 48
  assert models.get("resnet10", width=0.0625, out_dim=32).feature_dim == 32  # Same dim: no layer.
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3))))
  assert shapes["params"]["output"]["kernel"].shape == (32, 48)
