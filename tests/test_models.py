import jax
import jax.numpy as jnp
import pytest

from stolen_jax import models
from stolen_jax.errors import ConfigError


@pytest.mark.parametrize("name,expected_m,dim", [
    ("resnet18", 11.2, 512), ("resnet34", 21.3, 512), ("resnet50", 23.5, 2048)])
def test_full_width_parameter_counts(name, expected_m, dim):
  # Table V: ResNet18 11.2M, ResNet34 21.3M (no compute: eval_shape).
  model = models.get(name)
  assert models.param_count(model) / 1e6 == pytest.approx(expected_m, abs=0.05)
  assert model.feature_dim == dim


@pytest.mark.parametrize("name", models.names())
def test_tiny_forward_shapes(name):
  model = models.get(name, width=0.0625)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  y, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert y.shape == (2, model.feature_dim) and bool(jnp.all(jnp.isfinite(y)))
  assert "batch_stats" in updates
  assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).shape == (2, model.feature_dim)


def test_unknown_arch_names_choices():
  with pytest.raises(ConfigError, match="resnet18"):
    models.get("resnet19")
