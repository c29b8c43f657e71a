"""MoCo target pretraining (§II-A, Eq. 2), MoCo v2 style: query encoder f with an MLP head,
momentum (key) encoder f_m = EMA of f, and a queue of K negative keys, all inside the pure
train step (the queue, its pointer and f_m live in ``TrainState.extra``).

**Shuffle-BN, as a single program.** BatchNorm statistics computed over the same images for
queries and keys let the model tell positives apart through the statistics (a "cheat" the
MoCo paper describes). The original splits the batch over GPUs (per-GPU BN) and shuffles
the key batch across GPUs. Here the global batch is split into ``bn_groups`` groups with
their own BatchNorm statistics (``vmap`` over groups; running averages are the mean of the
groups'), and the key batch is permuted before grouping and un-permuted after: the same
computation as shuffle-BN on ``bn_groups`` GPUs, independent of how many devices actually
run it, so a sharded step still equals the unsharded one.
"""

import jax
import jax.numpy as jnp
import optax

from stolen_jax import losses, train_lib


def moco_loss(q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float) -> jax.Array:
  """Mean InfoNCE of Eq. 2: logit 0 is q·k (the positive), the rest q·queue (negatives).

  ``q``, ``k`` (N, D) and ``queue`` (K, D) are L2-normalised; ``k`` and ``queue`` carry no
  gradient.
  """
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  negatives = q @ queue.T
  logits = jnp.concatenate([positive, negatives], axis=-1) / temperature
  return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])


def enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.Array):
  """Replaces the oldest ``len(keys)`` entries (at ``pointer``) with ``keys``; returns the new
  (queue, pointer). K must be a multiple of the batch size, as in MoCo."""
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (pointer, 0))
  return queue, (pointer + keys.shape[0]) % queue.shape[0]


def ema(target, online, momentum: float):
  """momentum * target + (1 - momentum) * online, leaf by leaf (the key encoder's update)."""
  return jax.tree_util.tree_map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def initial_extra(rng: jax.Array, queue_size: int, dim: int):
  """A function (params, batch_stats) -> MoCo's extra state: f_m = f, a random unit queue."""
  def make(params, batch_stats):
    queue = losses.l2_normalize(jax.random.normal(rng, (queue_size, dim)))
    return {"key_params": params, "key_batch_stats": batch_stats, "queue": queue,
            "queue_ptr": jnp.zeros((), jnp.int32)}
  return make


def grouped_apply(model, params, batch_stats, x, groups: int):
  """Train-mode forward with BatchNorm statistics per group of the batch; returns
  (projections, batch_stats averaged over groups)."""
  n = x.shape[0]
  xg = x.reshape((groups, n // groups) + x.shape[1:])

  def one(xi):
    (_, z), updates = model.apply({"params": params, "batch_stats": batch_stats}, xi, train=True,
                                  mutable=["batch_stats"])
    return z, updates["batch_stats"]

  z, stats = jax.vmap(one)(xg)
  return z.reshape((n,) + z.shape[2:]), jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), stats)


def moco_step(state: train_lib.TrainState, batch, *, model, tx: optax.GradientTransformation,
              augment, temperature: float, momentum: float, bn_groups: int):
  """One MoCo update: keys from f_m on a shuffled batch, InfoNCE against the queue, an
  optimizer step on f, then f_m <- EMA(f_m, f) and the keys enqueued."""
  extra = state.extra
  k_q, k_k, k_perm = jax.random.split(train_lib.step_key(state), 3)
  images = batch["images"]
  x_q, x_k = augment(images, k_q), augment(images, k_k)
  groups = bn_groups if images.shape[0] % bn_groups == 0 else 1

  # Keys: shuffle, per-group BN, un-shuffle (shuffle-BN); no gradient to f_m.
  perm = jax.random.permutation(k_perm, images.shape[0])
  keys_shuffled, key_stats = grouped_apply(model, extra["key_params"], extra["key_batch_stats"],
                                           x_k[perm], groups)
  keys = jnp.zeros_like(keys_shuffled).at[perm].set(keys_shuffled)
  keys = jax.lax.stop_gradient(losses.l2_normalize(keys))

  def loss_fn(params):
    q, stats = grouped_apply(model, params, state.batch_stats, x_q, groups)
    return moco_loss(losses.l2_normalize(q), keys, extra["queue"], temperature), stats

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = train_lib.apply_gradients(state, tx, grads, batch_stats)
  queue, pointer = enqueue(extra["queue"], extra["queue_ptr"], keys)
  new_extra = {"key_params": ema(extra["key_params"], state.params, momentum),
               "key_batch_stats": key_stats, "queue": queue, "queue_ptr": pointer}
  return state.replace(extra=new_extra), {"loss": loss}
