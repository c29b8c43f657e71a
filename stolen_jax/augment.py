"""Data augmentations on device, with torchvision's semantics.

Each op is a pure function ``(image, key) -> image`` on one float32 image (H,W,3) in [0,1];
``make_augment`` composes ops by name and ``vmap``s them over a batch with one key per
example, so it runs inside a jitted train step. The random draws follow torchvision
(``RandomResizedCrop``'s ten rejection-sampling tries and center-crop fallback,
``ColorJitter``'s random order of its four adjustments, ``RandomApply`` probability), as the
paper's code uses torchvision.
"""

import dataclasses
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax.errors import ConfigError

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
# numpy, not jnp: importing this module must not start a JAX backend (a multi-process run
# calls jax.distributed.initialize after the config, which imports this, is read).
_GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114], np.float32)

Op = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """Parameters of every op; an op not named in the composition ignores its own."""
  image_size: int = 32
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip_p: float = 0.5
  jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
  jitter_p: float = 0.8
  grayscale_p: float = 0.2


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0,255] -> float32 [0,1]; float input is returned as float32."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def grayscale(image: jax.Array) -> jax.Array:
  """Luma of an RGB image replicated over three channels."""
  gray = jnp.tensordot(image, _GRAY_WEIGHTS, axes=([-1], [0]))[..., None]
  return jnp.broadcast_to(gray, image.shape)


def crop_box(key: jax.Array, height: int, width: int, scale, ratio, tries: int = 10):
  """torchvision's RandomResizedCrop.get_params: returns (top, left, h, w) as int32 scalars.

  All ``tries`` candidates are drawn at once and the first that fits is used; if none fits,
  the central crop clamped to ``ratio`` is the fallback, exactly as torchvision.
  """
  area = height * width
  k_area, k_ratio, k_i, k_j = jax.random.split(key, 4)
  target_area = area * jax.random.uniform(k_area, (tries,), minval=scale[0], maxval=scale[1])
  log_r = jax.random.uniform(k_ratio, (tries,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_r)
  w = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(ok)
  found = ok[first]
  h_sel, w_sel = h[first], w[first]
  top = jnp.floor(jax.random.uniform(k_i) * (height - h_sel + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_j) * (width - w_sel + 1)).astype(jnp.int32)
  # Fallback: central crop with the aspect ratio clamped into ``ratio`` (static arithmetic).
  in_ratio = width / height
  if in_ratio < min(ratio):
    fw, fh = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fh, fw = height, int(round(height * max(ratio)))
  else:
    fw, fh = width, height
  ft, fl = (height - fh) // 2, (width - fw) // 2
  pick = lambda a, b: jnp.where(found, a, b).astype(jnp.int32)
  return pick(top, ft), pick(left, fl), pick(h_sel, fh), pick(w_sel, fw)


def resized_crop(image: jax.Array, top, left, h, w, size: int) -> jax.Array:
  """Crops ``[top:top+h, left:left+w]`` and resizes it to (size, size), bilinear, antialiased."""
  h = h.astype(jnp.float32)
  w = w.astype(jnp.float32)
  scale = jnp.stack([size / h, size / w])
  translation = -jnp.stack([top.astype(jnp.float32), left.astype(jnp.float32)]) * scale
  out = jax.image.scale_and_translate(image, (size, size, image.shape[-1]), (0, 1), scale,
                                      translation, method="linear", antialias=True)
  return jnp.clip(out, 0.0, 1.0)


def random_resized_crop(params: AugmentParams) -> Op:
  def op(image, key):
    box = crop_box(key, image.shape[0], image.shape[1], params.crop_scale, params.crop_ratio)
    return resized_crop(image, *box, size=params.image_size)
  return op


def random_flip(params: AugmentParams) -> Op:
  def op(image, key):
    return jnp.where(jax.random.uniform(key) < params.flip_p, image[:, ::-1], image)
  return op


def _blend(image, other, factor):
  return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def adjust_brightness(image, factor):
  return jnp.clip(image * factor, 0.0, 1.0)


def adjust_contrast(image, factor):
  mean = jnp.mean(jnp.tensordot(image, _GRAY_WEIGHTS, axes=([-1], [0])))
  return _blend(image, mean, factor)


def adjust_saturation(image, factor):
  return _blend(image, grayscale(image), factor)


def rgb_to_hsv(image):
  """torchvision's _rgb2hsv for float images in [0,1]."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  maxc = jnp.max(image, axis=-1)
  minc = jnp.min(image, axis=-1)
  eqc = maxc == minc
  cr = maxc - minc
  s = cr / jnp.where(eqc, 1.0, maxc)
  divisor = jnp.where(eqc, 1.0, cr)
  rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
  hr = jnp.where(maxc == r, bc - gc, 0.0)
  hg = jnp.where((maxc == g) & (maxc != r), 2.0 + rc - bc, 0.0)
  hb = jnp.where((maxc != g) & (maxc != r), 4.0 + gc - rc, 0.0)
  h = jnp.mod((hr + hg + hb) / 6.0 + 1.0, 1.0)
  return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(hsv):
  """torchvision's _hsv2rgb."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  i = i.astype(jnp.int32) % 6
  p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
  q = jnp.clip(v * (1.0 - s * f), 0.0, 1.0)
  t = jnp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
  table = jnp.stack([
      jnp.stack([v, q, p, p, t, v], -1),
      jnp.stack([t, v, v, q, p, p], -1),
      jnp.stack([p, p, t, v, v, q], -1)], -2)  # (..., 3, 6)
  return jnp.take_along_axis(table, jnp.broadcast_to(i[..., None, None], table.shape[:-1] + (1,)),
                             axis=-1)[..., 0]


def adjust_hue(image, factor):
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + factor, 1.0))
  return hsv_to_rgb(hsv)


def color_jitter(params: AugmentParams) -> Op:
  """RandomApply(ColorJitter(b, c, s, h), p): four adjustments in a random order."""
  b, c, s, hue = params.jitter

  def op(image, key):
    k_apply, k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 6)
    factors = (
        jax.random.uniform(k_b, minval=max(0.0, 1 - b), maxval=1 + b),
        jax.random.uniform(k_c, minval=max(0.0, 1 - c), maxval=1 + c),
        jax.random.uniform(k_s, minval=max(0.0, 1 - s), maxval=1 + s),
        jax.random.uniform(k_h, minval=-hue, maxval=hue),
    )
    adjust = (
        lambda x: adjust_brightness(x, factors[0]),
        lambda x: adjust_contrast(x, factors[1]),
        lambda x: adjust_saturation(x, factors[2]),
        lambda x: adjust_hue(x, factors[3]),
    )
    order = jax.random.permutation(k_order, 4)
    out = image
    for position in range(4):
      out = jax.lax.switch(order[position], adjust, out)
    return jnp.where(jax.random.uniform(k_apply) < params.jitter_p, out, image)
  return op


def random_grayscale(params: AugmentParams) -> Op:
  def op(image, key):
    return jnp.where(jax.random.uniform(key) < params.grayscale_p, grayscale(image), image)
  return op


OPS: dict[str, Callable[[AugmentParams], Op]] = {
    "crop": random_resized_crop,
    "flip": random_flip,
    "jitter": color_jitter,
    "grayscale": random_grayscale,
}


def parse_names(spec: str | Sequence[str]) -> tuple[str, ...]:
  """'crop,flip' or ('crop', 'flip') -> validated tuple of op names ('' or 'none' -> ())."""
  if isinstance(spec, str):
    # ',' or '+' separate ops ('+' lets a sweep axis list subsets: 'crop+flip,jitter').
    spec = [] if spec.strip().lower() in ("", "none") else spec.replace("+", ",").split(",")
  names = tuple(n.strip() for n in spec if n.strip())
  for n in names:
    if n not in OPS:
      raise ConfigError(f"unknown augmentation {n!r}; valid choices: {', '.join(OPS)}")
  return names


def make_augment(spec: str | Sequence[str], params: AugmentParams = AugmentParams()):
  """Returns ``augment(images, key) -> float32 views``: the named ops in order, per example.

  ``images`` is a batch (N,H,W,3), uint8 or float in [0,1]; example ``n`` uses
  ``fold_in(key, n)``, so a view depends only on (key, position), not on the batch size
  or on how the batch is sharded.
  """
  ops = [OPS[n](params) for n in parse_names(spec)]

  def augment_one(image, key):
    for i, op in enumerate(ops):
      image = op(image, jax.random.fold_in(key, i))
    return image

  def augment(images, key):
    images = to_float(images)
    keys = jax.vmap(lambda n: jax.random.fold_in(key, n))(jnp.arange(images.shape[0]))
    return jax.vmap(augment_one)(images, keys)

  augment.per_key = lambda images, keys: jax.vmap(augment_one)(to_float(images), keys)
  return augment
