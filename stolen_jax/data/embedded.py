"""Procedurally drawn image datasets, generated deterministically and offline.

They make the project run out of the box with no download, and they are rich enough for
contrastive learning to learn something measurable:

* ``shapes``   10 classes of shapes and patterns (circle, ring, square, half-disc, triangle,
               cross, ellipse, stripes, checker, dots) in random colours, sizes, positions
               and rotations over noisy gradient backgrounds: the provider's pretraining set.
* ``textures`` 5 kinds of colourful texture (plasma, blobs, waves, lines, gradients) that
               look unlike ``shapes``: an attacker's out-of-distribution surrogate set.
* ``glyphs``   10 seven-segment "digits", white strokes on black, single channel, slanted
               and shifted: an MNIST-like downstream task (exercises 1 -> 3 channels).
* ``scenes``   cluttered compositions (texture background, 1-3 objects, strokes): the
               demo attacker's surrogate set, varied like natural images yet drawn unlike
               the target's ``shapes``.

Each is read through ``stolen_jax.data.sources`` as ``embedded:NAME`` like any other source.
"""

import numpy as np

SIZE = 32
SPLIT_SIZES = {"train": 5000, "test": 1000}
_SPLIT_SEEDS = {"train": 0, "test": 1}


def _grid(n):
  coords = (np.arange(SIZE, dtype=np.float32) + 0.5) / SIZE * 2 - 1  # [-1, 1]
  yy, xx = np.meshgrid(coords, coords, indexing="ij")
  return np.broadcast_to(yy, (n, SIZE, SIZE)), np.broadcast_to(xx, (n, SIZE, SIZE))


def _col(rng, n):
  return rng.uniform(0.0, 1.0, (n, 1, 1, 3)).astype(np.float32)


def _smooth_step(dist, softness=0.08):
  """Antialiased inside-mask from a signed distance (negative inside)."""
  return 1.0 / (1.0 + np.exp(np.clip(dist / softness, -30, 30)))


_PALETTE = np.array([[0.9, 0.1, 0.1], [0.1, 0.7, 0.2], [0.15, 0.3, 0.9], [0.95, 0.85, 0.1],
                     [0.6, 0.2, 0.8], [0.1, 0.8, 0.85], [0.95, 0.95, 0.95], [0.1, 0.1, 0.1]],
                    np.float32)

_SHAPES = ("circle", "ring", "square", "halfdisc", "triangle", "cross", "ellipse", "stripes",
           "checker", "dots")


def _shape_mask(kind, u, v, rng, n):
  rho = np.sqrt(u ** 2 + v ** 2)
  if kind == "circle":
    return _smooth_step(rho - 1.0)
  if kind == "ring":
    return _smooth_step(np.abs(rho - 0.75) - 0.25)
  if kind == "square":
    return _smooth_step(np.maximum(np.abs(u), np.abs(v)) - 0.8)
  if kind == "halfdisc":
    return _smooth_step(np.maximum(rho - 1.0, -v))
  if kind == "triangle":
    return _smooth_step(np.maximum(2 * np.abs(u) - 1 - v, v - 0.7) / 2)
  if kind == "cross":
    arm = lambda a, b: np.maximum(np.abs(a) - 0.3, np.abs(b) - 1.0)
    return _smooth_step(np.minimum(arm(u, v), arm(v, u)))
  if kind == "ellipse":
    return _smooth_step(np.sqrt(u ** 2 + (v / 0.45) ** 2) - 1.0)
  freq = rng.uniform(2.5, 4.5, (n, 1, 1)).astype(np.float32)
  if kind == "stripes":
    return _smooth_step(-np.sin(np.pi * freq * u) * 0.3)
  if kind == "checker":
    return _smooth_step(-np.sin(np.pi * freq * u) * np.sin(np.pi * freq * v) * 0.3)
  if kind == "dots":
    cell_u = np.mod(u * freq / 2, 1.0) - 0.5
    cell_v = np.mod(v * freq / 2, 1.0) - 0.5
    return _smooth_step((np.sqrt(cell_u ** 2 + cell_v ** 2) - 0.28) * 2)
  raise ValueError(kind)


def _posed_masks(kinds, scale, cy, cx, angle, yy, xx, rng):
  """Antialiased masks of shape ``kinds`` (indices into _SHAPES), each scaled, centred at
  (cx, cy) and rotated by ``angle``; pattern shapes draw their frequency from ``rng``."""
  du, dv = xx - cx, yy - cy
  u = (np.cos(angle) * du + np.sin(angle) * dv) / scale
  v = (-np.sin(angle) * du + np.cos(angle) * dv) / scale
  mask = np.zeros((len(kinds), SIZE, SIZE), np.float32)
  for k, kind in enumerate(_SHAPES):
    sel = kinds == k
    if sel.any():
      mask[sel] = _shape_mask(kind, u[sel], v[sel], rng, int(sel.sum()))
  return mask


def make_shapes(n: int, seed: int):
  """``n`` shape images (uint8, N x 32 x 32 x 3) and their labels (10 classes)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(_SHAPES), n)
  yy, xx = _grid(n)
  scale = rng.uniform(0.35, 0.7, (n, 1, 1)).astype(np.float32)
  cy, cx = (rng.uniform(-0.35, 0.35, (2, n, 1, 1))).astype(np.float32)
  angle = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
  mask = _posed_masks(labels, scale, cy, cx, angle, yy, xx, rng)
  # Colours come from a small palette, independent of the class: colour alone then cannot
  # tell instances apart, so contrastive learning has to pick up shape.
  fg_idx = rng.integers(0, len(_PALETTE), n)
  bg_idx = (fg_idx + rng.integers(1, len(_PALETTE), n)) % len(_PALETTE)
  foreground = _PALETTE[fg_idx][:, None, None, :]
  angle_bg = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
  ramp = ((np.cos(angle_bg) * xx + np.sin(angle_bg) * yy) * 0.15)[..., None]
  background = np.clip(_PALETTE[bg_idx][:, None, None, :] + ramp, 0, 1)
  image = background * (1 - mask[..., None]) + foreground * mask[..., None]
  image += rng.normal(0, 0.04, image.shape).astype(np.float32)
  return _to_uint8(image), labels.astype(np.int32)


_TEXTURES = ("plasma", "blobs", "waves", "lines", "gradient")


def make_textures(n: int, seed: int):
  """``n`` colourful texture images and their kind (5 classes); unlike ``shapes``."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(_TEXTURES), n)
  yy, xx = _grid(n)
  field = np.zeros((n, SIZE, SIZE), np.float32)
  for k, kind in enumerate(_TEXTURES):
    sel = np.flatnonzero(labels == k)
    m = len(sel)
    if not m:
      continue
    y, x = yy[sel], xx[sel]
    if kind == "plasma":
      acc = np.zeros((m, SIZE, SIZE), np.float32)
      for _ in range(6):
        f = rng.uniform(1, 6, (2, m, 1, 1))
        ph = rng.uniform(0, 2 * np.pi, (m, 1, 1))
        acc += np.sin(np.pi * (f[0] * x + f[1] * y) + ph)
      field[sel] = acc / 6
    elif kind == "blobs":
      acc = np.zeros((m, SIZE, SIZE), np.float32)
      for _ in range(5):
        c = rng.uniform(-1, 1, (2, m, 1, 1))
        s = rng.uniform(0.1, 0.4, (m, 1, 1))
        acc += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2) / (2 * s ** 2))
      field[sel] = acc
    elif kind == "waves":
      f = rng.uniform(1.5, 3.5, (m, 1, 1))
      field[sel] = np.sin(np.pi * f * np.sqrt((x - rng.uniform(-1, 1, (m, 1, 1))) ** 2 +
                                              (y - rng.uniform(-1, 1, (m, 1, 1))) ** 2) * 3)
    elif kind == "lines":
      acc = np.zeros((m, SIZE, SIZE), np.float32)
      for _ in range(4):
        a = rng.uniform(0, np.pi, (m, 1, 1))
        off = rng.uniform(-0.8, 0.8, (m, 1, 1))
        acc = np.maximum(acc, np.exp(-((np.cos(a) * x + np.sin(a) * y - off) / 0.06) ** 2))
      field[sel] = acc
    else:
      a = rng.uniform(0, 2 * np.pi, (m, 1, 1))
      field[sel] = np.cos(a) * x + np.sin(a) * y
  lo = field.min((1, 2), keepdims=True)
  hi = field.max((1, 2), keepdims=True)
  t = ((field - lo) / np.maximum(hi - lo, 1e-6))[..., None]
  image = _col(rng, n) * (1 - t) + _col(rng, n) * t
  image += rng.normal(0, 0.03, image.shape).astype(np.float32)
  return _to_uint8(image), labels.astype(np.int32)


# Seven-segment layout: (x0, y0, x1, y1) of each segment in a unit box, and digits' segments.
_SEGMENTS = {
    "a": (0, 0, 1, 0), "b": (1, 0, 1, 0.5), "c": (1, 0.5, 1, 1), "d": (0, 1, 1, 1),
    "e": (0, 0.5, 0, 1), "f": (0, 0, 0, 0.5), "g": (0, 0.5, 1, 0.5),
}
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def make_glyphs(n: int, seed: int):
  """``n`` seven-segment digits (uint8, N x 32 x 32 x 1, white on black) and labels 0-9."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n)
  yy, xx = _grid(n)
  width = rng.uniform(0.35, 0.55, (n, 1, 1))
  height = width * rng.uniform(1.6, 2.0, (n, 1, 1))
  x0 = rng.uniform(-0.7, 0.7 - width)
  y0 = rng.uniform(-0.9, 0.9 - height)
  slant = rng.uniform(-0.25, 0.25, (n, 1, 1))
  thick = rng.uniform(0.07, 0.13, (n, 1, 1))
  img = np.zeros((n, SIZE, SIZE), np.float32)
  for seg, (sx0, sy0, sx1, sy1) in _SEGMENTS.items():
    on = np.array([seg in _DIGITS[d] for d in labels])[:, None, None]
    ax, ay = x0 + sx0 * width, y0 + sy0 * height
    bx, by = x0 + sx1 * width, y0 + sy1 * height
    px = xx - slant * (yy - y0)
    # Distance from each pixel to the segment a-b.
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (yy - ay) * dy) / (dx ** 2 + dy ** 2), 0, 1)
    dist = np.sqrt((px - ax - t * dx) ** 2 + (yy - ay - t * dy) ** 2)
    img = np.maximum(img, on * _smooth_step(dist - thick, 0.04))
  img += rng.normal(0, 0.03, img.shape)
  return _to_uint8(img[..., None]), labels.astype(np.int32)


def make_scenes(n: int, seed: int):
  """``n`` cluttered "scenes" (uint8, N x 32 x 32 x 3): a texture background with one to
  three objects (shape masks in random colours, at random scales, some partly outside the
  frame) and sometimes thin strokes. Natural-image-like in the sense that matters here —
  varied edges, colours, objects and clutter — yet no image is drawn like ``shapes``
  (one centred object on a plain background) or ``glyphs``: an attacker's surrogate set from
  "another distribution", as ImageNet is for a CIFAR-10 target. Labels: the object count - 1.
  """
  rng = np.random.default_rng(seed)
  background, _ = make_textures(n, seed + 7)
  image = background.astype(np.float32) / 255.0
  image = 0.35 + 0.45 * image  # Softer backgrounds: objects stand out as in photographs.
  yy, xx = _grid(n)
  counts = rng.integers(1, 4, n)
  for slot in range(3):
    active = (counts > slot)[:, None, None]
    kinds = rng.integers(0, len(_SHAPES), n)
    scale = rng.uniform(0.2, 0.6, (n, 1, 1)).astype(np.float32)
    cy, cx = rng.uniform(-0.9, 0.9, (2, n, 1, 1)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    mask = _posed_masks(kinds, scale, cy, cx, angle, yy, xx, rng)
    colour = np.where(rng.uniform(size=(n, 1, 1, 1)) < 0.5, _PALETTE[rng.integers(0, len(_PALETTE), n)][:, None, None, :],
                      _col(rng, n))
    m = (mask * active)[..., None]
    image = image * (1 - m) + colour * m
  # Thin strokes (as in handwriting or text) on a third of the scenes.
  strokes = rng.uniform(size=n) < 0.33
  for _ in range(3):
    a = rng.uniform(0, np.pi, (n, 1, 1))
    off = rng.uniform(-0.7, 0.7, (n, 1, 1))
    along = np.abs(-np.sin(a) * xx + np.cos(a) * yy - rng.uniform(-0.3, 0.3, (n, 1, 1)))
    line = np.exp(-((np.cos(a) * xx + np.sin(a) * yy - off) / 0.07) ** 2) * (along < 0.5)
    line = (line * strokes[:, None, None])[..., None]
    shade = rng.choice([0.0, 1.0], (n, 1, 1, 1))
    image = image * (1 - line) + shade * line
  image += rng.normal(0, 0.03, image.shape).astype(np.float32)
  return _to_uint8(image), (counts - 1).astype(np.int32)


def _to_uint8(image):
  return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


GENERATORS = {"shapes": (make_shapes, 10), "textures": (make_textures, 5),
              "glyphs": (make_glyphs, 10), "scenes": (make_scenes, 3)}
_DATASET_SEEDS = {"glyphs": 1000, "shapes": 2000, "textures": 3000, "scenes": 4000}


def load(name: str, split: str):
  """(images, labels, num_classes) of the embedded dataset ``name``'s ``split``."""
  make, num_classes = GENERATORS[name]
  # Distinct, fixed seeds per dataset and split, so train and test never share an image and
  # adding a generator never changes another's images.
  seed = _DATASET_SEEDS[name] + _SPLIT_SEEDS[split]
  images, labels = make(SPLIT_SIZES[split], seed)
  return images, labels, num_classes
