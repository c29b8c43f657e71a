"""The training machinery shared by every trainer (pretrain, steal).

A trainer supplies a pure ``step_fn(state, batch) -> (state, metrics)``; this module runs
it over device-resident data: each dispatch is a ``lax.scan`` over a chunk of steps that
gathers its batches from the on-device dataset by (sharded) index, so the host only sends
a permutation per epoch and reads metrics back once per epoch. It also owns the resume
logic, checkpoints, NaN guard, metric logging and progress.
"""

import dataclasses
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from stolen_jax import checkpoint, metrics as metrics_lib, parallel
from stolen_jax.errors import ConfigError, TrainingDiverged


@flax.struct.dataclass
class TrainState:
  """Everything a train step reads and writes; a pytree, saved whole by Orbax."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  extra: Any = None  # Trainer-specific state (e.g. a MoCo queue); None when unused.


def create_state(model, tx: optax.GradientTransformation, rng: jax.Array, sample_input,
                 mesh, extra=None) -> TrainState:
  """Initializes ``model`` under ``jit`` (eager flax init is slow) and replicates it on ``mesh``.

  ``extra`` is a pytree, or a function ``(params, batch_stats) -> pytree`` for trainer state
  that starts from the initial weights (MoCo's momentum encoder).
  """
  init_rng, state_rng = jax.random.split(rng)

  @jax.jit
  def init():
    variables = model.init(init_rng, sample_input, train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), rng=state_rng,
                      extra=extra(params, batch_stats) if callable(extra) else extra)

  return parallel.replicate_tree(init(), mesh)


def step_key(state: TrainState) -> jax.Array:
  """The step's randomness: a pure function of the run's key and the step number."""
  return jax.random.fold_in(state.rng, state.step)


def step_of(state: TrainState) -> int:
  """The state's step number as an int (a stacked state's cells share one step)."""
  return int(np.max(jax.device_get(state.step)))


def apply_gradients(state: TrainState, tx, grads, batch_stats) -> TrainState:
  """One optimizer update; returns the next state (step + 1)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state)


@jax.jit
def _all_finite(tree) -> jax.Array:
  """True when every float leaf of ``tree`` is finite: one on-device reduction."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def check_finite(state: TrainState, name: str, checkpoint_dir: str, last_good) -> None:
  """Stops with TrainingDiverged when a parameter or BatchNorm statistic is not finite,
  before anything is saved: a diverged state never becomes a checkpoint (a loss bounded by
  normalised features can stay finite while the weights are NaN)."""
  if not bool(_all_finite((state.params, state.batch_stats))):
    raise TrainingDiverged(
        f"{name}: parameters or BatchNorm statistics became NaN/inf by step {step_of(state)}; "
        f"lower the learning rate or check the data. Nothing was saved after the last good "
        f"checkpoint (step {last_good}) in {checkpoint_dir}.")


def largest_divisor_at_most(n: int, limit: int) -> int:
  """The largest d <= limit dividing n, so every dispatch scans the same number of steps
  (one compilation)."""
  for d in range(max(1, min(n, limit)), 0, -1):
    if n % d == 0:
      return d
  return 1


def epoch_permutation(seed: int, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
  """The epoch's batches of example indices (steps, batch): a pure function of (seed, epoch),
  so a resumed run visits the same batches as an uninterrupted one. The tail that does not
  fill a batch is dropped (a different tail each epoch)."""
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  steps = num_examples // batch_size
  return perm[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def default_steps_per_dispatch(requested: int) -> int:
  """``requested`` if > 0; else (auto) 1 on CPU, where XLA:CPU runs the convolutions of a
  ``lax.scan`` body about 10x slower than a straight-line step (measured here: 7.4 s vs
  0.75 s for a width-1/8 ResNet-18 SimCLR step), and 64 on GPU/TPU, where one dispatch per
  64 steps removes the host round trips."""
  if requested > 0:
    return requested
  return 1 if jax.default_backend() == "cpu" else 64


def make_chunk_fn(step_fn: Callable, state_shardings=None, mesh=None) -> Callable:
  """jit(scan(step_fn)) over a chunk of index batches, gathering batches from device data.

  The state is donated: its buffers are reused for the next state. A chunk of one step
  compiles without a loop (see ``default_steps_per_dispatch``). With ``state_shardings``
  (and ``mesh``) the output state keeps the input's layout, so sharding propagation from
  batch-sharded values (e.g. MoCo's enqueued keys) never changes the state's layout
  between dispatches.
  """
  def body(state, data, indices):
    batch = jax.tree_util.tree_map(lambda a: a[indices], data)
    return step_fn(state, batch)

  def run_chunk(state, data, index_chunk):
    if index_chunk.shape[0] == 1:  # No loop: XLA:CPU runs convolutions ~10x slower in one.
      state, metrics = body(state, data, index_chunk[0])
      return state, jax.tree_util.tree_map(lambda m: m[None], metrics)
    return jax.lax.scan(lambda s, i: body(s, data, i), state, index_chunk)

  if state_shardings is None:
    return jax.jit(run_chunk, donate_argnums=(0,))
  return jax.jit(run_chunk, donate_argnums=(0,),
                 out_shardings=(state_shardings, parallel.replicated(mesh)))


def compiled_flops(compiled) -> float:
  """The FLOPs XLA counts for one call of a compiled program (0 when it reports none)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 — a backend without cost analysis: no figure, not a failure.
    return 0.0
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0) or 0.0)


@dataclasses.dataclass
class FitResult:
  """What a training run reports back."""
  state: TrainState
  history: list  # Per-epoch means of the step metrics (plus any eval metrics).
  compile_s: float
  train_s: float
  steps_per_s: float
  images_per_s: float
  resumed_from_step: int
  flops_per_step: float = 0.0  # XLA's cost analysis of the compiled step (0: not reported).


def fit(state: TrainState, step_fn: Callable, data, *, num_examples: int, batch_size: int,
        epochs: int, seed: int, mesh, checkpoint_dir: str, meta: dict,
        writer: metrics_lib.Writer, steps_per_dispatch: int = 0,
        checkpoint_every_epochs: int = 10, log_every_steps: int = 50,
        images_per_example: int = 1, max_to_keep: int = 2,
        on_epoch_end: Optional[Callable[[int, TrainState], dict]] = None,
        data_for_epoch: Optional[Callable[[int], Any]] = None,
        name: str = "train") -> FitResult:
  """Trains ``state`` for ``epochs`` over ``data`` (a pytree of device arrays with leading
  axis ``num_examples``), resuming from the newest checkpoint in ``checkpoint_dir``.

  Checkpoints are written every ``checkpoint_every_epochs`` epochs and at the end; a loss
  that is not finite stops the run with TrainingDiverged. ``on_epoch_end(epoch, state)``
  may return extra metrics (e.g. a kNN accuracy) to log. ``data_for_epoch(epoch)``, if given,
  supplies each epoch's data instead of ``data`` (same shapes; e.g. freshly queried answers).
  """
  if epochs < 1 or batch_size < 1:
    raise ConfigError(f"{name}: epochs={epochs} and batch_size={batch_size} must be >= 1")
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"{name}: batch_size={batch_size} is larger than the {num_examples} "
                      "training examples")
  parallel.check_batch_size(batch_size, mesh)
  total_steps = steps_per_epoch * epochs
  chunk = largest_divisor_at_most(steps_per_epoch, default_steps_per_dispatch(steps_per_dispatch))
  mngr = checkpoint.manager(checkpoint_dir, max_to_keep=max_to_keep)
  abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  restored = checkpoint.restore_latest(mngr, abstract)
  resumed_from = 0
  if restored is not None:
    state = restored
    resumed_from = step_of(state)
    logging.info("%s: resumed from step %d in %s", name, resumed_from, checkpoint_dir)
  if resumed_from % steps_per_epoch:
    raise ConfigError(f"{name}: checkpoint step {resumed_from} is not at an epoch boundary of "
                      f"{steps_per_epoch} steps/epoch; was batch_size or the dataset changed?")
  start_epoch = resumed_from // steps_per_epoch
  index_sharding = NamedSharding(mesh, P(None, parallel.DATA_AXIS))

  def indices_for(epoch):
    idx = epoch_permutation(seed, epoch, num_examples, batch_size)
    return idx.reshape(steps_per_epoch // chunk, chunk, batch_size)

  compile_s = flops_per_step = 0.0
  history = []
  train_s = 0.0
  steps_done = 0
  if start_epoch < epochs:
    if data_for_epoch is not None:
      data = data_for_epoch(start_epoch)
    t0 = time.perf_counter()
    first = jax.device_put(indices_for(start_epoch)[0], index_sharding)
    shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
    run_chunk = make_chunk_fn(step_fn, shardings, mesh).lower(state, data, first).compile()
    compile_s = time.perf_counter() - t0
    flops_per_step = compiled_flops(run_chunk) / chunk
    logging.info("%s: compiled a %d-step chunk in %.1f s; %d steps/epoch, %d epochs from %d",
                 name, chunk, compile_s, steps_per_epoch, epochs, start_epoch)
  progress = metrics_lib.Progress(total_steps, batch_size * images_per_example, resumed_from,
                                  name=name)
  for epoch in range(start_epoch, epochs):
    t_epoch = time.perf_counter()
    chunks = indices_for(epoch)
    if data_for_epoch is not None and epoch != start_epoch:
      data = data_for_epoch(epoch)
    outputs = []
    for c in range(len(chunks)):
      state, m = run_chunk(state, data, jax.device_put(chunks[c], index_sharding))
      outputs.append(m)
    outputs = jax.device_get(outputs)  # One host sync per epoch.
    train_s += time.perf_counter() - t_epoch
    steps_done += steps_per_epoch
    step_metrics = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    first_step = epoch * steps_per_epoch
    for k, v in step_metrics.items():
      if not np.all(np.isfinite(v)):
        bad = first_step + int(np.argmin(np.isfinite(v.reshape(len(v), -1)).all(axis=1))) + 1
        raise TrainingDiverged(
            f"{name}: {k} became {v[~np.isfinite(v)][0]} at step {bad} (epoch {epoch + 1}); "
            f"lower the learning rate or check the data. The last good checkpoint "
            f"(step {mngr.latest_step()}) is in {checkpoint_dir}.")
    for i in range(log_every_steps - 1, steps_per_epoch, max(log_every_steps, 1)):
      writer.write_scalars(first_step + i + 1, {k: np.mean(v[i]) for k, v in step_metrics.items()})
    epoch_metrics = {k: float(np.mean(v)) for k, v in step_metrics.items()}
    # A stacked state's metrics carry a trailing cell axis: kept per cell in the history.
    per_cell = {f"{k}_per_cell": np.mean(v, axis=0).tolist() for k, v in step_metrics.items()
                if v.ndim > 1}
    rate = steps_done / max(train_s, 1e-9)
    epoch_metrics.update(steps_per_s=rate, images_per_s=rate * batch_size * images_per_example)
    if on_epoch_end is not None:
      epoch_metrics.update(on_epoch_end(epoch, state) or {})
    writer.write_scalars(step_of(state), {f"epoch/{k}": v for k, v in epoch_metrics.items()})
    history.append({"epoch": epoch + 1, **epoch_metrics, **per_cell})
    # Named as a reader needs them: a probe's "accuracy" here is on its training images.
    shown = {"loss": "loss", "accuracy": "train accuracy", "knn_accuracy": "kNN accuracy"}
    progress.update(step_of(state), force=epoch == epochs - 1,
                    **{shown[k]: v for k, v in epoch_metrics.items() if k in shown})
    if (epoch + 1) % checkpoint_every_epochs == 0 or epoch == epochs - 1:
      check_finite(state, name, checkpoint_dir, mngr.latest_step())
      checkpoint.save(mngr, step_of(state), state, meta)
  progress.close()
  checkpoint.finish(mngr)
  mngr.close()
  rate = steps_done / train_s if train_s else 0.0
  return FitResult(state=state, history=history, compile_s=compile_s, train_s=train_s,
                   steps_per_s=rate, images_per_s=rate * batch_size * images_per_example,
                   resumed_from_step=resumed_from, flops_per_step=flops_per_step)
