"""StolenEncoder (Liu et al., CCS 2022; Algorithm 1): one query per surrogate image, then
L = L1 + λ·L2 with L1 = d(f_t(x), f_s(x)) and L2 = d(f_t(x), f_s(A(x))) — a fresh A(x)
every step and no extra query (Eq. 3, 6, 7). Its variants (``steal.variant``): λ=0 is
*w/o-aug*; ``query_aug`` uses L2' = d(f_t(A(x)), f_s(A(x))) and pays for f_t(A(x)) every
epoch; ``pretrain_encoder`` is SimCLR on the surrogate set (0 queries).

Its step is its own (``custom_step``): the official code's per-view BatchNorm passes, run as
one grouped pass (``steal_step``), and the stacked cells of a sweep (``steal.stack``).
"""

import functools

import jax
import jax.numpy as jnp

from stolen_jax import augment as augment_lib
from stolen_jax import losses, train_lib
from stolen_jax.attacks.base import Attack, constant

# BatchNorm's running-average momentum (models.resnet.batch_norm: PyTorch's 0.1).
_BN_MOMENTUM = 0.9


def steal_step(state: train_lib.TrainState, batch, *, model, tx, augment, lambda_: float,
               distance, reduction: str, normalize: bool, bn_passes: str,
               one_pass: bool = True, distance_choices: tuple = (), answer_scale=None):
  """One update of the stolen encoder on L1 + λ·L2 (L2' when ``batch`` has ``target_aug``).

  ``batch``: ``images`` (uint8 x) and ``target`` = f_t(x); for query-aug also
  ``images_aug`` (the queried A(x), float) and ``target_aug`` = f_t(A(x)).

  ``bn_passes='separate'`` (the official code: each view normalised by its own batch
  statistics) runs as *one* pass over both views with BatchNorm statistics per view group
  (``vmap`` over the two groups, which XLA merges into one batched convolution per layer);
  the running averages are composed as the two sequential passes would leave them, so the
  result equals two passes (``one_pass=False``, kept as the reference) with half the kernels.

  ``distance`` is a name of ``losses.DISTANCES``, or (in a stack of cells that differ in it)
  a traced index into ``distance_choices``.

  ``answer_scale`` = (mean, inverse std) per dimension of the answers (``steal.answer_scaling
  =standardize``): both feature vectors are compared as z-scores, so dimensions that are
  nearly constant over the surrogate set (a ReLU network's shared offset) do not dominate
  the distance. The encoder regresses the target's space per dimension; with ``normalize``
  the scale of its deviation from the answers' mean is free (a cosine of z-scores).
  """
  if distance_choices:
    branches = [functools.partial(losses.distance, name, reduction=reduction)
                for name in distance_choices]
    dist = lambda a, b: jax.lax.switch(distance, branches, a, b)  # noqa: E731
  else:
    dist = functools.partial(losses.distance, distance, reduction=reduction)
  query_aug = "target_aug" in batch
  clean = augment_lib.to_float(batch["images"])
  if isinstance(lambda_, (int, float)) and lambda_ == 0:
    views = None  # w/o-aug: no augmented pass at all (λ traced, as in a stack: always a pass).
  elif query_aug:
    views = batch["images_aug"]
  else:
    views = augment(batch["images"], train_lib.step_key(state))
  unit = losses.l2_normalize if normalize else (lambda f: f)
  if answer_scale is None:
    prep = unit
  else:
    mean, inv_std = answer_scale
    prep = lambda f: unit((f - mean) * inv_std)  # noqa: E731
  target = prep(batch["target"])
  target_aug = prep(batch["target_aug"]) if query_aug else target

  def forward(params, batch_stats, x):
    f, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                             mutable=["batch_stats"])
    return prep(f), updates["batch_stats"]

  def forward_grouped(params, batch_stats, x, v):
    f, stats = jax.vmap(lambda xi: forward(params, batch_stats, xi))(jnp.stack([x, v]))
    # Sequential passes leave m·(m·s + (1-m)·c) + (1-m)·a; the vmapped ones give
    # u_c = m·s + (1-m)·c and u_a = m·s + (1-m)·a, so that is m·u_c + u_a - m·s.
    composed = jax.tree_util.tree_map(
        lambda s0, u: _BN_MOMENTUM * u[0] + u[1] - _BN_MOMENTUM * s0, batch_stats, stats)
    return f[0], f[1], composed

  def loss_fn(params):
    if views is None:
      f_clean, stats = forward(params, state.batch_stats, clean)
      l1 = dist(target, f_clean)
      return l1, (stats, l1, jnp.zeros(()))
    if bn_passes == "separate" and one_pass:
      f_clean, f_aug, stats = forward_grouped(params, state.batch_stats, clean, views)
    elif bn_passes == "separate":  # Two passes, one per view (the reference).
      f_clean, stats = forward(params, state.batch_stats, clean)
      f_aug, stats = forward(params, stats, views)
    else:  # One pass over [x; A(x)]: BatchNorm statistics over both.
      f_both, stats = forward(params, state.batch_stats, jnp.concatenate([clean, views]))
      f_clean, f_aug = jnp.split(f_both, 2)
    l1 = dist(target, f_clean)
    l2 = dist(target_aug, f_aug)
    return l1 + lambda_ * l2, (stats, l1, l2)

  (loss, (stats, l1, l2)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return train_lib.apply_gradients(state, tx, grads, stats), {"loss": loss, "l1": l1, "l2": l2}


def default_one_pass() -> bool:
  """Whether ``bn_passes='separate'`` runs as one grouped pass: on GPU/TPU, where it halves
  the kernel launches of a launch-bound small-batch step; not on CPU, where XLA:CPU ran the
  vmapped convolutions slower (bench/bn_passes.py, small ResNet: 0.48 vs 0.40 s min)."""
  return jax.default_backend() != "cpu"


def student_views(block) -> int:
  """The stolen encoder sees x and one augmented view A(x) per step (x alone at λ=0)."""
  return 1


ATTACK = Attack(
    name="stolenencoder", reference="Liu et al. CCS 2022 (the paper this project reproduces)",
    params={}, query_views=constant(0), student_views=student_views, loss=None,
    custom_step=True)
