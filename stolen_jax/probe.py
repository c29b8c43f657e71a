"""Downstream probes (§V-A3): an MLP on frozen encoder features, and the paper's metrics.

The classifier is fully connected with hidden layers 512 and 256 (ReLU) and a softmax
output, trained with Adam (lr 1e-4, batch 256, 500 epochs). Features are extracted once
per (encoder, dataset) and cached; training is data parallel over the mesh, the feature
arrays living on device (the design card's "pmap-based probes", written as jit over a
``'data'`` mesh). TA/SA (Eq. 8, 9), plus fidelity: mean cosine similarity between target
and stolen features and the agreement of the two classifiers' predictions.
"""

import functools
import os
import time
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stolen_jax import features, losses, metrics, optim, parallel, stages, train_lib
from stolen_jax.data import sources
from stolen_jax.errors import ConfigError, DataError


class MLPClassifier(nn.Module):
  """Dense(512) -> ReLU -> Dense(256) -> ReLU -> Dense(classes); softmax in the loss."""
  num_classes: int
  hidden: Sequence[int] = (512, 256)
  dropout: float = 0.0  # The paper's text has none; the official code uses 0.5.

  @nn.compact
  def __call__(self, x, train: bool = False):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


def probe_step(state: train_lib.TrainState, batch, *, model, tx):
  """One cross-entropy update of the classifier on a batch of (features, labels)."""
  key = train_lib.step_key(state)

  def loss_fn(params):
    logits = model.apply({"params": params}, batch["features"], train=True, rngs={"dropout": key})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == batch["labels"])

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, state.batch_stats), {"loss": loss, "accuracy": accuracy}


def predict(model, params, feats: np.ndarray, mesh, batch_size: int = 4096) -> np.ndarray:
  """Predicted classes for ``feats``."""
  apply = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x), -1))
  return features.map_batches(lambda batch: apply(params, batch), feats, mesh,
                              batch_size).astype(np.int32)


def train_classifier(train_f, train_y, test_f, test_y, num_classes: int, cfg, workdir: str,
                     mesh, seed: int) -> dict:
  """Trains the MLP on (train_f, train_y); returns test accuracy and predictions."""
  model = MLPClassifier(num_classes, tuple(cfg.hidden), cfg.dropout)
  batch_size = min(cfg.batch_size, len(train_f) - len(train_f) % mesh.size)
  tx = optim.make_optimizer(cfg, (len(train_f) // batch_size) * cfg.epochs)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(seed), jnp.zeros((1, train_f.shape[1])), mesh)
  data = {"features": parallel.put_replicated(train_f.astype(np.float32), mesh),
          "labels": parallel.put_replicated(train_y.astype(np.int32), mesh)}
  writer = metrics.Writer(workdir)
  result = train_lib.fit(
      state, functools.partial(probe_step, model=model, tx=tx), data, num_examples=len(train_f),
      batch_size=batch_size, epochs=cfg.epochs, seed=seed, mesh=mesh,
      checkpoint_dir=os.path.join(workdir, "checkpoints"), meta={"stage": "probe"}, writer=writer,
      steps_per_dispatch=cfg.steps_per_dispatch, checkpoint_every_epochs=cfg.checkpoint_every_epochs,
      log_every_steps=max(1, len(train_f) // batch_size), max_to_keep=1, name="probe")
  writer.close()
  predictions = predict(model, result.state.params, test_f.astype(np.float32), mesh)
  return {"accuracy": float(np.mean(predictions == test_y)), "predictions": predictions,
          "train_accuracy": result.history[-1]["accuracy"] if result.history else None,
          "train_s": result.train_s, "epochs_per_s": (len(result.history) / result.train_s
                                                      if result.train_s else None)}


def dataset_slug(spec: str) -> str:
  """'tfds:svhn_cropped' -> 'svhn_cropped'; a path -> its last component."""
  _, target = sources.parse_spec(spec)
  return os.path.basename(os.path.normpath(target)).replace("/", "_").replace(".", "_") or "data"


def load_downstream(spec: str, cfg, seed: int):
  """(train, test) ImageSets of a downstream dataset at the probe's image size."""
  kw = dict(image_size=cfg.image_size, data_dir=cfg.data_dir, seed=seed)
  train = sources.load(spec, cfg.train_split, num_examples=cfg.num_train, **kw)
  test = sources.load(spec, cfg.test_split, num_examples=cfg.num_test, **kw)
  if train.labels is None or test.labels is None:
    raise ConfigError(f"downstream dataset {spec} has no labels")
  unseen = np.setdiff1d(np.unique(test.labels), np.unique(train.labels))
  if len(unseen):
    # A class the classifier never saw cannot be predicted: the accuracy would mislead.
    count = int(np.isin(test.labels, unseen).sum())
    raise DataError(
        f"downstream dataset {spec}: {count} of {len(test)} test images ({cfg.test_split}) have "
        f"labels that no training image ({cfg.train_split}) has: {unseen[:10].tolist()}"
        f"{' ...' if len(unseen) > 10 else ''}. Use splits that share their classes (a larger "
        "probe.num_train, or other splits)")
  return train, test


def cached_features(path: str, compute: Callable[[], tuple]) -> tuple:
  """(train_f, test_f) from ``path`` if present and readable, else computed and saved
  (process 0 reads and writes; every process follows its reading)."""
  loaded = None
  if parallel.is_main() and os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        loaded = (f["train"], f["test"])
    except Exception as e:
      logging.warning("ignoring damaged feature cache %s (%s); recomputing", path, e)
  if parallel.agree(loaded is not None):
    if not parallel.multiprocess():
      return loaded
    shapes = parallel.agree([list(a.shape) for a in loaded] if loaded else None)
    return tuple(parallel.agree(loaded[i] if loaded else np.zeros(shapes[i], np.float32))
                 for i in range(2))
  train_f, test_f = compute()  # Collective: every process computes (and holds) the features.
  if not parallel.is_main():
    return train_f, test_f
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, train=train_f, test=test_f)
  os.replace(tmp, path)
  return train_f, test_f


def validate_settings(cfg) -> None:
  """Checks the probe's counts and rates before any stage runs."""
  parse_datasets(cfg.datasets)
  for key in ("epochs", "batch_size", "image_size", "feature_batch_size"):
    if key == "image_size" and cfg[key] is None:
      continue  # The encoder's own size (probe.run).
    if not isinstance(cfg[key], int) or cfg[key] < 1:
      raise ConfigError(f"probe.{key}={cfg[key]!r} must be an integer >= 1")
  if any(not isinstance(h, int) or h < 1 for h in cfg.hidden):
    raise ConfigError(f"probe.hidden={tuple(cfg.hidden)!r}: every width must be an integer >= 1")
  if not (cfg.lr > 0 and cfg.lr < float("inf")):
    raise ConfigError(f"probe.lr={cfg.lr} must be a finite number > 0")
  if not 0 <= cfg.dropout < 1:
    raise ConfigError(f"probe.dropout={cfg.dropout} must be in [0, 1)")
  for key in ("num_train", "num_test"):
    n = cfg[key]
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0
                          or (n > 1 and not float(n).is_integer())):
      raise ConfigError(f"probe.{key}={n!r}: give a count >= 1 or a fraction in (0, 1]")


def probe_settings(cfg) -> dict:
  """What determines a probe's result besides its encoder and data: the classifier's recipe."""
  return stages.settings_of(cfg, exclude=("datasets",))


def probe_stage(workdir: str, spec: str, features_fn, encoder_id: dict, train, test, cfg, mesh,
                seed: int, strict: bool = False) -> dict:
  """Probes one encoder on one downstream set in its keyed stage directory
  ``workdir/probe/<dataset>/<key>``: the key covers the encoder (``encoder_id``: its weights'
  fingerprint and the defense its answers pass through), the data and the probe's recipe."""
  stage = stages.open_stage(
      workdir, os.path.join("probe", dataset_slug(spec)),
      {"dataset": spec, "probe": probe_settings(cfg), "seed": seed,
       "train_images": eaas_fingerprint(train.images), "test_images": eaas_fingerprint(test.images)},
      upstream=encoder_id, strict=strict)
  # Under the stage's lease: a process that finds another probing it waits, then reads its
  # result (probe_one restores a finished probe).
  with stage.claimed(done=lambda: os.path.exists(os.path.join(stage.dir, "result.json"))):
    result = probe_one(stage.dir, features_fn, train, test, cfg, mesh, seed)
  return {**result, "stage_dir": stage.dir}


def eaas_fingerprint(images: np.ndarray) -> str:
  from stolen_jax.eaas.cache import fingerprint
  return fingerprint(images)


def probe_one(out_dir: str, features_fn, train, test, cfg, mesh, seed: int) -> dict:
  """Features of ``train``/``test`` through ``features_fn`` (cached in ``out_dir``), then the
  classifier (skipped when its result exists). Returns accuracy, predictions and test features."""
  train_f, test_f = cached_features(os.path.join(out_dir, "features.npz"),
                                    lambda: (features_fn(train.images), features_fn(test.images)))
  result_path = os.path.join(out_dir, "result.json")
  predictions_path = os.path.join(out_dir, "predictions.npy")
  result = stages.read_json(result_path) if parallel.is_main() else None
  if isinstance(result, dict) and os.path.exists(predictions_path):
    try:
      result["predictions"] = np.load(predictions_path)
      if result["predictions"].shape != (len(test),):
        raise ValueError(f"shape {result['predictions'].shape}")
    except Exception as e:
      logging.warning("ignoring damaged predictions %s (%s); retraining", predictions_path, e)
      result = None
  else:
    result = None
  if parallel.multiprocess():  # Every process follows process 0's reading.
    predictions = result.pop("predictions") if result else np.zeros(len(test), np.int32)
    result = parallel.agree(result)
    if result is not None:
      result["predictions"] = parallel.agree(predictions.astype(np.int32))
  if result is None:
    num_classes = max(train.num_classes or 0, int(train.labels.max()) + 1, int(test.labels.max()) + 1)
    result = train_classifier(train_f, train.labels, test_f, test.labels, num_classes, cfg,
                              out_dir, mesh, seed)
    if parallel.is_main():
      tmp = predictions_path + ".tmp.npy"
      np.save(tmp, result["predictions"])
      os.replace(tmp, predictions_path)
    # Written last and atomically: its presence means the probe finished.
    stages.write_json_atomic(result_path, {k: v for k, v in result.items() if k != "predictions"},
                             indent=2)
  logging.info("probe %s: test accuracy %.4f", out_dir, result["accuracy"])
  return {**result, "test_features": test_f}


def fidelity(target: dict, stolen: dict) -> dict:
  """Mean cosine similarity of target vs stolen test features (None when their dimensions
  differ: e.g. a stolen encoder that dropped B4B's padding, probed beside a customer's padded
  answers) and prediction agreement."""
  t, s = np.asarray(target["test_features"]), np.asarray(stolen["test_features"])
  cos = (-float(losses.distance("cosine", jnp.asarray(t), jnp.asarray(s)))
         if t.shape == s.shape else None)
  agreement = float(np.mean(target["predictions"] == stolen["predictions"]))
  return {"cosine_similarity": cos, "agreement": agreement}


def run(config, workdir: str, mesh=None) -> dict:
  """``job='probe'``: probes the encoder at ``probe.encoder`` on every downstream dataset."""
  cfg = config.probe
  if not cfg.encoder:
    raise ConfigError("probe.encoder is required: the path of an Orbax checkpoint of an "
                      "encoder (target or stolen), e.g. <workdir>/steal")
  mesh = mesh or parallel.make_mesh()
  from stolen_jax import targets  # Checkpoints, import:NAME:PATH and callable:MODULE:FUNCTION.
  if targets.is_remote(cfg.encoder):
    raise ConfigError("probe.encoder must be local (a checkpoint, import:..., callable:...); "
                      "probing an API's answers is the pipeline's TA")
  encoder = targets.open(cfg.encoder, mesh, cfg.feature_batch_size,
                         max_weights_gb=cfg.get("max_weights_gb"))
  features_fn, meta = encoder.features_fn, encoder.meta
  if cfg.image_size is None:  # The size the encoder was trained at, from its record.
    cfg = cfg.copy_and_resolve_references()
    with cfg.unlocked():
      cfg.image_size = int(meta.get("image_size") or 32) if meta.get("kind") is None else 32
  rows = []
  for spec in parse_datasets(cfg.datasets):
    train, test = load_downstream(spec, cfg, config.seed)
    t0 = time.perf_counter()
    result = probe_stage(workdir, spec, features_fn, {"encoder": meta["fingerprint"]}, train, test,
                         cfg, mesh, config.seed, config.get("strict_stages", False))
    rows.append({"dataset": spec, "accuracy": result["accuracy"], "num_train": len(train),
                 "num_test": len(test), "seconds": round(time.perf_counter() - t0, 2),
                 "stage_dir": result["stage_dir"]})
  summary = {"encoder": targets.absolute(cfg.encoder), "fingerprint": meta["fingerprint"],
             "arch": meta["arch"], "probe": probe_settings(cfg), "results": rows}
  stages.write_json_atomic(os.path.join(workdir, "probe", "summary.json"), summary, indent=2)
  if parallel.is_main():
    print(f"encoder {meta.get('arch')} ({summary['encoder']}, fingerprint {meta['fingerprint']}); "
          f"probe: {cfg.image_size}-px images, MLP {list(cfg.hidden)}, {cfg.epochs} epochs, "
          f"lr {cfg.lr}, batch {cfg.batch_size}, dropout {cfg.dropout}, seed {config.seed}")
    for row in rows:
      print(f"{row['dataset']}: test accuracy {100 * row['accuracy']:.2f}% ({row['num_train']} "
            f"train / {row['num_test']} test images)")
  return summary


def parse_datasets(spec) -> list[str]:
  """'tfds:mnist,tfds:svhn_cropped' or a sequence -> validated list of dataset specs."""
  items = spec.split(",") if isinstance(spec, str) else list(spec)
  items = [s.strip() for s in items if s.strip()]
  if not items:
    raise ConfigError("probe.datasets is empty: name at least one downstream dataset")
  for s in items:
    sources.parse_spec(s)
  return items
