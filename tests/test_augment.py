import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stolen_jax import augment as A
from stolen_jax.errors import ConfigError


def images(n=8, size=16, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3))


def test_flip_twice_is_identity():
  flip = A.make_augment("flip", A.AugmentParams(flip_p=1.0))
  x = images()
  np.testing.assert_array_equal(flip(flip(x, jax.random.PRNGKey(0)), jax.random.PRNGKey(1)), x)
  np.testing.assert_array_equal(flip(x, jax.random.PRNGKey(0)), x[:, :, ::-1])


def test_grayscale_channels_equal_and_luma():
  gray = A.make_augment("grayscale", A.AugmentParams(grayscale_p=1.0))
  x = images()
  y = gray(x, jax.random.PRNGKey(0))
  np.testing.assert_allclose(y[..., 0], y[..., 1])
  np.testing.assert_allclose(y[..., 1], y[..., 2])
  np.testing.assert_allclose(y[..., 0], x @ jnp.array([0.2989, 0.587, 0.114]), rtol=1e-5, atol=1e-6)


def test_composition_shapes_range_and_keys():
  aug = jax.jit(A.make_augment("crop,flip,jitter,grayscale", A.AugmentParams(image_size=12)))
  x = (np.asarray(images(size=20)) * 255).astype(np.uint8)
  y1 = aug(x, jax.random.PRNGKey(1))
  assert y1.shape == (8, 12, 12, 3) and y1.dtype == jnp.float32
  assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
  np.testing.assert_array_equal(y1, aug(x, jax.random.PRNGKey(1)))
  assert not np.allclose(y1, aug(x, jax.random.PRNGKey(2)))
  # Examples get distinct randomness: identical inputs give different views.
  same = np.repeat(x[:1], 8, axis=0)
  views = np.asarray(aug(same, jax.random.PRNGKey(3)))
  assert len({v.tobytes() for v in views}) == 8


def test_view_depends_on_position_not_batch_size():
  aug = jax.jit(A.make_augment("crop,jitter", A.AugmentParams(image_size=16)))
  x = images(8)
  np.testing.assert_allclose(aug(x, jax.random.PRNGKey(4))[:4], aug(x[:4], jax.random.PRNGKey(4)),
                             atol=1e-6)


def test_crop_box_valid_and_fallback():
  for seed in range(50):
    top, left, h, w = map(int, A.crop_box(jax.random.PRNGKey(seed), 32, 24, (0.08, 1.0), (0.75, 4 / 3)))
    assert 0 < h <= 32 and 0 < w <= 24 and 0 <= top <= 32 - h and 0 <= left <= 24 - w
  # scale > 1 can never fit: torchvision falls back to the central crop clamped to the ratio.
  top, left, h, w = map(int, A.crop_box(jax.random.PRNGKey(0), 32, 16, (2.0, 3.0), (0.75, 4 / 3)))
  assert (h, w) == (21, 16) and (top, left) == (5, 0)


def test_full_crop_is_identity():
  x = images(2, 16)
  out = A.resized_crop(x[0], jnp.int32(0), jnp.int32(0), jnp.int32(16), jnp.int32(16), 16)
  np.testing.assert_allclose(out, x[0], atol=1e-5)


def test_color_adjustments_match_torchvision_formulas():
  x = images(1, 8)[0]
  np.testing.assert_allclose(A.adjust_brightness(x, 1.3), np.clip(x * 1.3, 0, 1), atol=1e-6)
  mean = np.mean(np.asarray(x) @ np.array([0.2989, 0.587, 0.114]))
  np.testing.assert_allclose(A.adjust_contrast(x, 0.5), np.clip(0.5 * x + 0.5 * mean, 0, 1), atol=1e-6)
  np.testing.assert_allclose(A.adjust_saturation(x, 0.0), A.grayscale(x), atol=1e-6)
  np.testing.assert_allclose(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-5)
  np.testing.assert_allclose(A.adjust_hue(x, 0.0), x, atol=1e-5)
  # A hue shift of 1/3 turns pure red into pure green.
  red = jnp.zeros((1, 1, 3)).at[..., 0].set(1.0)
  np.testing.assert_allclose(A.adjust_hue(red, 1 / 3)[0, 0], [0, 1, 0], atol=1e-5)


def test_unknown_op_is_a_config_error():
  with pytest.raises(ConfigError, match="grayscale"):
    A.make_augment("flip,blur")
  assert A.parse_names("none") == ()
