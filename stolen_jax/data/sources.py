"""One input path for every dataset: ``tfds:NAME``, ``folder:PATH``, ``npz:PATH``, ``embedded:NAME``.

``load(spec, split, ...)`` returns an ``ImageSet``: uint8 images (N, S, S, 3) resized to
``image_size`` with grey images repeated to three channels (paper §V-A3), int32 labels (or
None for unlabeled folders), and the number of classes. Splits accept TFDS slicing
(``train[:5%]``, ``test[100:200]``) for every source. 32-px datasets are small, so a split
is read whole into memory; the trainers then keep it on device.
"""

import dataclasses
import os
import re
from typing import Optional

import numpy as np

from stolen_jax.data.labels import check_labels  # noqa: F401  (also sources.check_labels)
from stolen_jax.errors import ConfigError, DataError

SOURCE_KINDS = ("tfds", "folder", "npz", "embedded")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff")


@dataclasses.dataclass
class ImageSet:
  """A split held in memory: images uint8 (N,H,W,3), labels int32 (N,) or None."""
  images: np.ndarray
  labels: Optional[np.ndarray]
  num_classes: Optional[int]
  name: str

  def __len__(self):
    return len(self.images)


def parse_spec(spec: str) -> tuple[str, str]:
  """'tfds:mnist' -> ('tfds', 'mnist'); raises ConfigError naming the valid kinds."""
  kind, sep, rest = spec.partition(":")
  if not sep or kind not in SOURCE_KINDS or not rest:
    raise ConfigError(f"bad dataset {spec!r}: expected one of "
                      f"{', '.join(k + ':NAME_OR_PATH' for k in SOURCE_KINDS)}")
  return kind, rest


_SLICE = re.compile(r"^(\w+)(?:\[(-?\d*%?):(-?\d*%?)\])?$")


def parse_split(split: str) -> tuple[str, slice]:
  """'train[:5%]' -> ('train', slice over fractions or counts), for non-TFDS sources."""
  m = _SLICE.match(split.replace(" ", ""))
  if not m:
    raise ConfigError(f"bad split {split!r}: expected NAME or NAME[start:stop] (counts or %)")
  return m.group(1), slice(m.group(2) or None, m.group(3) or None)


def _apply_slice(n: int, bounds: slice) -> slice:
  def resolve(b):
    if b is None:
      return None
    if b.endswith("%"):
      return int(round(n * float(b[:-1]) / 100))
    return int(b)
  return slice(resolve(bounds.start), resolve(bounds.stop))


def subset_indices(n: int, num_examples, seed: int) -> np.ndarray:
  """Deterministic uniform subset of range(n): ``num_examples`` is a count (int >= 1),
  a fraction (float in (0, 1]) or None (everything). Returned sorted."""
  if num_examples is None:
    return np.arange(n)
  if isinstance(num_examples, float) and 0 < num_examples <= 1:
    count = int(round(n * num_examples))
  elif isinstance(num_examples, (int, np.integer)) and num_examples >= 1:
    count = int(num_examples)
  else:
    raise ConfigError(f"num_examples={num_examples!r}: give a count >= 1 or a fraction in (0, 1]")
  if count > n:
    raise ConfigError(f"num_examples={count} exceeds the {n} examples available")
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(n, size=count, replace=False))


def _load_npz(path: str, split_name: str):
  if not os.path.exists(path):
    raise DataError(f"npz file {path!r} does not exist (expected arrays x_train, y_train, "
                    "x_test, y_test of uint8 images)")
  try:
    with np.load(path, allow_pickle=False) as data:
      key = f"x_{split_name}"
      if key not in data:
        raise DataError(f"{path!r} has no array {key!r}; it has {sorted(data.files)}")
      images = data[key]
      labels = data[f"y_{split_name}"] if f"y_{split_name}" in data else None
  except DataError:
    raise
  except Exception as e:  # Not a zip, a truncated member, pickled objects, ...
    raise DataError(f"cannot read npz file {path!r} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:160] if str(e) else 'damaged'}); expected uint8 "
                    "arrays x_train, y_train, x_test, y_test") from None
  labels = check_labels(labels, len(images), f"{path}:{split_name}")
  num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
  return images, labels, num_classes


def _load_folder(path: str, split_name: str):
  """Class-per-subfolder (labeled) or a flat folder of images (unlabeled).

  If ``path/<split>`` exists it is used, so a folder with train/ and test/ works too.
  """
  from PIL import Image
  if os.path.isdir(os.path.join(path, split_name)):
    path = os.path.join(path, split_name)
  if not os.path.isdir(path):
    raise DataError(f"image folder {path!r} does not exist")
  subdirs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
  files, labels = [], []
  if subdirs:
    for label, sub in enumerate(subdirs):
      for f in sorted(os.listdir(os.path.join(path, sub))):
        if f.lower().endswith(_IMAGE_SUFFIXES):
          files.append(os.path.join(path, sub, f))
          labels.append(label)
  else:
    files = [os.path.join(path, f) for f in sorted(os.listdir(path))
             if f.lower().endswith(_IMAGE_SUFFIXES)]
  if not files:
    raise DataError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) found in {path!r}")
  images = []
  for f in files:
    try:
      with Image.open(f) as im:
        images.append(np.asarray(im.convert("RGB")))
    except Exception as e:
      raise DataError(f"cannot read image file {f!r} ({type(e).__name__}: "
                      f"{str(e).splitlines()[0][:160] if str(e) else 'unreadable'})") from None
  shapes = {im.shape for im in images}
  if len(shapes) > 1:  # Mixed sizes: bring them to a common size before stacking.
    target = max(shapes)[:2]
    images = [np.asarray(Image.fromarray(im).resize(target[::-1], Image.BILINEAR)) for im in images]
  return (np.stack(images), np.asarray(labels, np.int32) if subdirs else None,
          len(subdirs) if subdirs else None)


def _load_tfds(name: str, split: str, data_dir, image_key: str, label_key: str, download: bool):
  from stolen_jax.data import tfds_reader  # With or without TensorFlow.
  return tfds_reader.load(name, split, data_dir, image_key, label_key, download)


def resize_images(images: np.ndarray, image_size: int, chunk: int = 2048) -> np.ndarray:
  """Bilinear (antialiased) resize of uint8 (N,H,W,C) to (N,S,S,C), in chunks, with JAX."""
  if images.shape[1] == image_size and images.shape[2] == image_size:
    return images
  import jax
  import jax.numpy as jnp

  @jax.jit
  def resize(x):
    x = x.astype(jnp.float32)
    y = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[3]), "bilinear")
    return jnp.clip(jnp.round(y), 0, 255).astype(jnp.uint8)

  out = [np.asarray(resize(images[i:i + chunk])) for i in range(0, len(images), chunk)]
  return np.concatenate(out)


def to_uint8(images: np.ndarray, name: str) -> np.ndarray:
  """uint8 images as they are; floats in [0, 1] scaled by 255, floats or integers in
  [0, 255] rounded; anything else (negative, > 255, NaN) is a DataError, never a cast."""
  if images.dtype == np.uint8:
    return images
  if images.dtype == np.bool_ or not (np.issubdtype(images.dtype, np.floating)
                                       or np.issubdtype(images.dtype, np.integer)):
    raise DataError(f"{name}: images of dtype {images.dtype} are not supported (give uint8, or "
                    "floats in [0, 1] or [0, 255])")
  if images.size == 0:
    return images.astype(np.uint8)
  lo, hi = float(np.min(images)), float(np.max(images))
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise DataError(f"{name}: images contain NaN or inf")
  if lo < 0 or hi > 255:
    raise DataError(f"{name}: {images.dtype} images range over [{lo:g}, {hi:g}]; give uint8, "
                    "or floats in [0, 1] or [0, 255]")
  if np.issubdtype(images.dtype, np.floating) and hi <= 1.0:
    images = images * 255.0  # Floats in [0, 1] (the usual ML convention).
  return np.clip(np.round(images), 0, 255).astype(np.uint8)


def check_image_shape(images: np.ndarray, name: str) -> None:
  """Images must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4."""
  if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
    raise DataError(f"{name}: image array of shape {images.shape} is not (N, H, W) or "
                    "(N, H, W, C) with 1, 3 or 4 channels")


def to_rgb(images: np.ndarray) -> np.ndarray:
  """(N,H,W) or (N,H,W,1) grey -> (N,H,W,3) by channel repetition; RGBA -> RGB."""
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 1:
    return np.repeat(images, 3, axis=-1)
  if images.shape[-1] == 4:
    return images[..., :3]
  if images.shape[-1] != 3:
    raise DataError(f"images with {images.shape[-1]} channels are not supported")
  return images


def load(spec: str, split: str = "train", *, image_size: int = 32, num_examples=None,
         seed: int = 0, data_dir: Optional[str] = None, image_key: str = "image",
         label_key: str = "label", download: bool = True) -> ImageSet:
  """Loads ``split`` of dataset ``spec`` into memory (see the module docstring).

  ``num_examples`` (count, fraction or None) draws a uniform random subset with ``seed``
  after slicing, e.g. the paper's surrogate set of 5% of a dataset's size.
  """
  kind, target = parse_spec(spec)
  if kind == "tfds":
    images, labels, num_classes = _load_tfds(target, split, data_dir, image_key, label_key, download)
  else:
    split_name, bounds = parse_split(split)
    if kind == "npz":
      images, labels, num_classes = _load_npz(os.path.expanduser(target), split_name)
    elif kind == "folder":
      images, labels, num_classes = _load_folder(os.path.expanduser(target), split_name)
    else:
      from stolen_jax.data import embedded
      if target not in embedded.GENERATORS:
        raise ConfigError(f"unknown embedded dataset {target!r}; valid choices: "
                          f"{', '.join(sorted(embedded.GENERATORS))}")
      if split_name not in embedded.SPLIT_SIZES:
        raise ConfigError(f"embedded datasets have splits {sorted(embedded.SPLIT_SIZES)}, "
                          f"not {split_name!r}")
      images, labels, num_classes = embedded.load(target, split_name)
    window = _apply_slice(len(images), bounds)
    images = images[window]
    labels = labels[window] if labels is not None else None
  check_image_shape(images, f"{spec}:{split}")
  images = to_uint8(images, f"{spec}:{split}")
  idx = subset_indices(len(images), num_examples, seed)
  images = images[idx]
  labels = labels[idx] if labels is not None else None
  images = resize_images(to_rgb(images), image_size)
  return ImageSet(np.ascontiguousarray(images), labels, num_classes, f"{spec}:{split}")
