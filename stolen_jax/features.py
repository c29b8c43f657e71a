"""Batched, sharded feature extraction and the kNN monitor of pretraining."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stolen_jax import augment, losses, parallel


def make_feature_fn(encoder):
  """jit((variables, uint8 or float images) -> float32 features), eval-mode BatchNorm."""
  @jax.jit
  def features(variables, images):
    return encoder.apply(variables, augment.to_float(images), train=False)
  return features


def restore_features_fn(path: str, mesh, batch_size: int = 512):
  """(images -> features of the encoder checkpointed at ``path``, its meta with the weights'
  content ``fingerprint``): one restore, one compiled function, batched over ``mesh``."""
  from stolen_jax import checkpoint
  encoder, variables, meta = checkpoint.restore_encoder(path)
  fn = make_feature_fn(encoder)
  return (lambda images: extract(fn, variables, images, mesh, batch_size)), meta


def map_batches(fn, array: np.ndarray, mesh, batch_size: int) -> np.ndarray:
  """``fn`` over ``array`` in global batches sharded over ``mesh``, results concatenated.

  The last batch is padded to full size (one compilation) and the padding dropped; the
  results stay on device until one transfer at the end.
  """
  batch_size = max(mesh.size, batch_size - batch_size % mesh.size)
  n = len(array)
  outputs = []
  for start in range(0, n, batch_size):
    batch = np.asarray(array[start:start + batch_size])
    if len(batch) < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - len(batch),) + batch.shape[1:], batch.dtype)])
    outputs.append(fn(parallel.put_sharded(batch, mesh)))
  if not outputs:
    return np.zeros((0,), np.float32)
  if parallel.multiprocess():  # Each process holds its shard: gather (every process gets all).
    return np.concatenate([parallel.to_host(o) for o in outputs])[:n]
  return np.concatenate(jax.device_get(outputs))[:n]


def extract(feature_fn, variables, images: np.ndarray, mesh, batch_size: int = 512) -> np.ndarray:
  """Features of every image (``feature_fn`` from ``make_feature_fn``), sharded over ``mesh``."""
  if len(images) == 0:
    return np.zeros((0, 0), np.float32)
  return map_batches(lambda batch: feature_fn(variables, batch), images, mesh, batch_size)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_predict(train_features, train_labels, test_features, k, temperature, num_classes):
  sim = losses.l2_normalize(test_features) @ losses.l2_normalize(train_features).T
  top_sim, top_idx = jax.lax.top_k(sim, k)
  votes = jax.nn.one_hot(train_labels[top_idx], num_classes) * jnp.exp(top_sim / temperature)[..., None]
  return jnp.argmax(jnp.sum(votes, axis=1), axis=-1)


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes: int,
                 k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
  """Weighted kNN (cosine similarity, exp(sim/T) votes; InstDisc/SimCLR monitors) accuracy."""
  k = min(k, len(train_features))
  train_features = jnp.asarray(train_features)
  train_labels = jnp.asarray(train_labels)
  correct = 0
  for start in range(0, len(test_features), chunk):
    pred = _knn_predict(train_features, train_labels, jnp.asarray(test_features[start:start + chunk]),
                        k, temperature, num_classes)
    correct += int(np.sum(np.asarray(pred) == test_labels[start:start + chunk]))
  return correct / max(len(test_features), 1)
