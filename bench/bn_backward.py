"""BatchNorm's backward on CPU: a ResNet's forward + backward with ``nn.BatchNorm`` (autodiff)
against a closed-form BatchNorm backward (``custom_vjp``, below) and remat of the element-wise
parts (only convolution outputs kept), alternating, several rounds. Issue 25's attempts.

  python bench/bn_backward.py [--arch=resnet34] [--width=1] [--batch=128] [--rounds=3] [--steps=3]

Batch 128 in 2 passes = the CPU steal step's 64 images × 2 views (one pass per view). Prints
one JSON line per (round, variant) and a table of min and median s per forward + backward.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import functools  # noqa: E402
from typing import Any  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jax.ad_checkpoint import checkpoint_name  # noqa: E402
from absl import app, flags  # noqa: E402

from stolen_jax import models  # noqa: E402
from stolen_jax.models import resnet  # noqa: E402


# --- The closed-form BatchNorm (tried for issue 25; not kept in the package: see RESULTS.md).
def _stats(x):
  axes = tuple(range(x.ndim - 1))
  mean = x.mean(axes)
  var = jnp.maximum((x * x).mean(axes) - mean * mean, 0.0)  # As Flax's fast variance.
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon: float):
  """Train-mode BatchNorm over every axis but the last: (y, batch mean, batch variance)."""
  return _forward(x, scale, bias, epsilon)[0]


def _forward(x, scale, bias, epsilon):
  mean, var = _stats(x)
  inv = lax.rsqrt(var + epsilon)
  y = (x - mean) * (inv * scale) + bias
  return (y, mean, var), (x, mean, inv, scale)


def _backward(epsilon, residuals, cotangents):
  del epsilon
  x, mean, inv, scale = residuals
  dy, dmean, dvar = cotangents
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  centered = x - mean
  dbias = dy.sum(axes)
  dscale = (dy * centered).sum(axes) * inv
  # d/dx of the normalisation, in closed form; then the (usually zero) cotangents of the
  # returned statistics: d mean/dx = 1/n, d var/dx = 2 (x - mean)/n.
  dx = (scale * inv) * (dy - dbias / n - centered * (inv * dscale / n))
  dx = dx + dmean / n + centered * (2.0 * dvar / n)
  return dx, dscale, dbias


batch_norm_train.defvjp(_forward, _backward)


class FusedBatchNorm(nn.Module):
  """``nn.BatchNorm`` over the last axis with ``batch_norm_train``'s backward in training."""
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  scale_init: Any = nn.initializers.ones

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    scale = self.param("scale", self.scale_init, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    dtype = self.dtype or x.dtype
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if self.use_running_average:
      y = (x32 - ra_mean.value) * (lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
      return y.astype(dtype)
    y, mean, var = batch_norm_train(x32, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(dtype)


_ARCH = flags.DEFINE_string("arch", "resnet34", "Encoder.")
_WIDTH = flags.DEFINE_float("width", 1.0, "Width multiplier.")
_BATCH = flags.DEFINE_integer("batch", 128, "Images per step (all views).")
_VIEWS = flags.DEFINE_integer("views", 2, "Train-mode passes the batch is split into.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed calls per round (after one warm-up).")


def _fused(train, dtype, name=None, zero_init=False):
  return FusedBatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                        name=name,
                        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


class NamedBasicBlock(resnet.BasicBlock):
  """resnet.BasicBlock with its convolutions' outputs named, for a remat policy that keeps
  only them (BatchNorm and ReLU are recomputed from them in the backward pass)."""

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding=k // 2, use_bias=False,
                                         kernel_init=resnet.conv_init, dtype=self.dtype, name=name)
    named = lambda y: checkpoint_name(y, "conv")
    y = named(conv(self.filters, 3, self.strides, "conv1")(x))
    y = nn.relu(resnet.batch_norm(train, self.dtype, "bn1")(y))
    y = named(conv(self.filters, 3, 1, "conv2")(y))
    y = resnet.batch_norm(train, self.dtype, "bn2")(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = named(conv(self.filters, 1, self.strides, "proj_conv")(x))
      x = resnet.batch_norm(train, self.dtype, "proj_bn")(x)
    return nn.relu(x + y)


RematBlock = nn.remat(NamedBasicBlock, static_argnums=(2,),
                      policy=jax.checkpoint_policies.save_only_these_names("conv"))

# name: (BatchNorm factory, residual block or None for the architecture's own)
VARIANTS = {"nn.BatchNorm (autodiff)": (resnet.batch_norm, None),
            "closed-form BatchNorm backward": (_fused, None),
            "remat: keep conv outputs only": (resnet.batch_norm, RematBlock),
            "closed-form BN + remat": (_fused, RematBlock)}


def compiled_step(variant):
  """A jitted forward + backward of the encoder built with ``variant``'s BatchNorm."""
  resnet.batch_norm, block = VARIANTS[variant]  # Looked up when the modules are traced.
  model = models.get(_ARCH.value, _WIDTH.value)
  if block is not None:
    model = model.clone(block=block)
  x = jax.random.uniform(jax.random.key(0), (_BATCH.value, 32, 32, 3))
  variables = model.init(jax.random.key(1), x[:2], train=False)

  def loss(params, stats, x):
    # As the CPU steal step: one train-mode pass per view, each with its own statistics.
    total = 0.0
    for view in jnp.split(x, _VIEWS.value):
      f, upd = model.apply({"params": params, "batch_stats": stats}, view, train=True,
                           mutable=["batch_stats"])
      stats = upd["batch_stats"]
      total = total + jnp.mean(jnp.square(f))
    return total, stats

  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  t0 = time.perf_counter()
  jax.block_until_ready(step(variables["params"], variables["batch_stats"], x))
  compile_s = time.perf_counter() - t0
  return (lambda: jax.block_until_ready(step(variables["params"], variables["batch_stats"], x)),
          compile_s)


def main(_):
  steps = {v: compiled_step(v) for v in VARIANTS}
  rows = []
  for r in range(_ROUNDS.value):
    for variant, (fn, compile_s) in steps.items():
      times = []
      for _ in range(_STEPS.value):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
      row = {"round": r, "variant": variant, "arch": _ARCH.value, "width": _WIDTH.value,
             "batch": _BATCH.value, "compile_s": round(compile_s, 1),
             "s_min": min(times), "s_median": statistics.median(times)}
      rows.append(row)
      print(json.dumps(row), flush=True)
  print(f"\n{_ARCH.value} width {_WIDTH.value}, batch {_BATCH.value} in {_VIEWS.value} passes, "
        f"forward + backward, {_ROUNDS.value} alternating rounds of {_STEPS.value} calls, s")
  print("| variant | min | median |\n|---|---|---|")
  for variant in VARIANTS:
    sel = [r for r in rows if r["variant"] == variant]
    print(f"| {variant} | {min(r['s_min'] for r in sel):.3f} | "
          f"{statistics.median(r['s_median'] for r in sel):.3f} |")


if __name__ == "__main__":
  app.run(main)
