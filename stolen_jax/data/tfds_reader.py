"""TFDS datasets read with or without TensorFlow.

``tfds.data_source`` reads datasets prepared as ArrayRecord (``tfds build
--file_format=array_record``) by index, decoding in numpy: no TensorFlow. ``tfds.load``
reads the default TFRecord format and downloads catalog datasets, and needs TensorFlow
(``pip install 'stolen_jax[tf]'``). Where TensorFlow is missing, a dataset that only
``tfds.load`` can give is one error naming the three ways on (the extra, ArrayRecord, or an
``.npz`` from ``job=prepare``).
"""

import importlib.util

import numpy as np

from stolen_jax.data import hints
from stolen_jax.data.labels import check_labels
from stolen_jax.errors import ConfigError, DataError


def tensorflow_available() -> bool:
  """Whether TensorFlow can be imported (without importing it)."""
  return importlib.util.find_spec("tensorflow") is not None


def _is_array_record(builder) -> bool:
  try:
    return builder.is_prepared() and "array_record" in str(builder.info.file_format).lower()
  except Exception:  # noqa: BLE001  (an info without a file format: TFRecord)
    return False


def _from_data_source(tfds, name, split, data_dir, image_key, label_key) -> dict:
  source = tfds.data_source(name, split=split, data_dir=data_dir)
  n = len(source)
  if n == 0:
    raise DataError(f"TFDS {name} split {split!r} is empty")
  first = source[0]
  if image_key not in first:
    raise DataError(f"TFDS {name} has no feature {image_key!r}; features: {sorted(first)}")
  images = np.empty((n,) + np.asarray(first[image_key]).shape, np.asarray(first[image_key]).dtype)
  labels = [] if label_key in first else None
  for i in range(n):
    record = source[i]
    images[i] = record[image_key]
    if labels is not None:
      labels.append(record[label_key])
  out = {image_key: images}
  if labels is not None:
    out[label_key] = np.asarray(labels)
  return out


def _from_load(tfds, name, split, data_dir, download, builder, image_key) -> dict:
  from stolen_jax.data.hints import prepare_hint
  try:
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
  except ValueError as e:  # Bad split names surface here.
    raise ConfigError(f"TFDS {name}: {e}") from None
  except Exception as e:  # Not prepared and the download failed (e.g. no internet).
    raise DataError(
        f"TFDS dataset {name!r} is not prepared in data_dir={builder.data_dir_root!r} and could "
        f"not be downloaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
        f"{prepare_hint(name)}") from None
  # Batched iteration rather than batch_size=-1, whose single-element path aborts the
  # process under tfds.testing.mock_data (tensorflow 2.21, tfds 4.9.10).
  parts = list(tfds.as_numpy(dataset.batch(8192)))
  if not parts:
    raise DataError(f"TFDS {name} split {split!r} is empty")
  data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  if image_key not in data:
    raise DataError(f"TFDS {name} has no feature {image_key!r}; features: {sorted(data)}")
  return data


def load(name: str, split: str, data_dir, image_key: str, label_key: str, download: bool):
  """(images, labels or None, num_classes or None) of a TFDS split."""
  import tensorflow_datasets as tfds
  if name.split("/")[0].split(":")[0] == "gtsrb":
    from stolen_jax.data import gtsrb  # noqa: F401  (registers the builder with TFDS)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"TFDS has no dataset {name!r} ({str(e).splitlines()[0]})") from None
  if _is_array_record(builder):
    data = _from_data_source(tfds, name, split, data_dir, image_key, label_key)
  elif not tensorflow_available():
    raise DataError(hints.needs_tensorflow(name, builder.data_dir_root))
  else:
    data = _from_load(tfds, name, split, data_dir, download, builder, image_key)
  labels = data.get(label_key)
  num_classes = None
  if labels is not None:
    labels = check_labels(labels, len(data[image_key]), f"tfds:{name}:{split}")
    feature = builder.info.features[label_key]
    num_classes = getattr(feature, "num_classes", None) or int(labels.max()) + 1
  return np.asarray(data[image_key]), labels, num_classes

