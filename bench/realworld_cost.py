"""What a steal of each real-target config costs, by XLA's FLOP count (no weights needed).

  python bench/realworld_cost.py [--queries 2500] [--configs configs/realworld/clip_rn50.py ...]

For each config: the stolen encoder's training (FLOPs per step × steps), the target's answers
(FLOPs per 224-px forward × queries) and the target's features for the probes; then the same
in seconds at the rate our fp32 steal step of a full-width ResNet-18 reached on one H200
(bench/RESULTS.md: 5.99 ms per step of 64, λ=20) — a bound from below on GPU time, as a
narrower network or the target's forward may reach a lower fraction of the chip. The CPU
figure is the same count at the rate the frontier study measured on this 2-core machine.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from stolen_jax import jobs, parallel, targets, train_lib  # noqa: E402
from stolen_jax.steal import trainer  # noqa: E402
from stolen_jax.targets import published  # noqa: E402

H200_RESNET18_STEP_S = 5.99e-3  # bench/RESULTS.md, steal step of ResNet-18 (full width), fp32.
REFERENCE_STEP_TARGET_DIM = 512  # That step's target: configs/steal_cifar10.py's ResNet-18.
CONFIGS = ("configs/realworld/efficientnet_lite0.py", "configs/realworld/clip_rn50.py",
           "configs/realworld/simclr_resnet50.py")


def steal_step_flops(cfg, target_dim: int) -> float:
  """XLA's FLOPs for one step of the stolen encoder's training under ``cfg`` (a steal block)."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  model, tx, step_fn = trainer.make_trainer(cfg, 1000, target_dim=target_dim)
  sample = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  state = train_lib.create_state(model, tx, jax.random.PRNGKey(0), sample, mesh)
  batch = {"images": jnp.zeros((cfg.batch_size, cfg.image_size, cfg.image_size, 3), jnp.uint8),
           "target": jnp.zeros((cfg.batch_size, target_dim), jnp.float32)}
  return train_lib.compiled_flops(jax.jit(step_fn).lower(state, batch).compile())


def target_forward_flops(name: str, batch: int = 4) -> tuple[float, int]:
  """(XLA's FLOPs per image of the published encoder ``name``'s forward with its
  preprocessing, at a 32-px query; its feature dimension), from random weights' shapes."""
  entry = published.get(name)
  module = entry.build()
  images = jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32)
  crop = jnp.zeros((1, entry.preprocess.crop, entry.preprocess.crop, 3), jnp.float32)
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), crop, train=False))

  def forward(v, x):
    return module.apply(v, entry.preprocess(x), train=False)
  compiled = jax.jit(forward).lower(variables, images).compile()
  return train_lib.compiled_flops(compiled) / batch, int(module.feature_dim)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
  parser.add_argument("--queries", type=int, default=None,
                      help="surrogate images (default: each config's steal.surrogate_size)")
  parser.add_argument("--cpu-step-s", type=float, default=0.95,
                      help="seconds per recipe step on this CPU (the frontier study's ~0.95 s)")
  args = parser.parse_args(argv)
  reference = jobs.load_config_file("configs/steal_cifar10.py").steal
  reference.arch, reference.width = "resnet18", 1.0
  reference_flops = steal_step_flops(reference, REFERENCE_STEP_TARGET_DIM)
  h200_flops_per_s = reference_flops / H200_RESNET18_STEP_S
  print(f"H200 reference: full-width ResNet-18 steal step {reference_flops / 1e9:.0f} GFLOP"
        f" in {H200_RESNET18_STEP_S * 1e3:.2f} ms = {h200_flops_per_s / 1e12:.1f} TFLOP/s")
  print("| config | target | dim | queries | epochs | step GFLOP | steps | steal TFLOP | "
        "answers TFLOP | probe features TFLOP | H200 s (steal + target) | CPU min (steal) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for path in args.configs:
    config = jobs.load_config_file(path)
    s, q = config.steal, config.probe
    name, _ = targets.parse_import(s.target)
    per_image, dim = target_forward_flops(name)
    queries = args.queries or s.surrogate_size
    steps = (queries // s.batch_size) * s.epochs
    step = steal_step_flops(s, dim)
    steal, answers = step * steps, per_image * queries
    # The probes' target features: unknown where they use whole downstream sets (no sizes).
    sized = q.num_train is not None and q.num_test is not None
    probe = per_image * (q.num_train + q.num_test) * len(q.datasets.split(",")) if sized else 0.0
    gpu_s = (steal + answers + probe) / h200_flops_per_s
    print(f"| {os.path.basename(path)} | {name} | {dim} | {queries} | {s.epochs} | "
          f"{step / 1e9:.1f} | {steps} | {steal / 1e12:.1f} | {answers / 1e12:.2f} | "
          f"{f'{probe / 1e12:.2f}' if sized else 'whole sets'} | {gpu_s:.1f} | "
          f"{steps * args.cpu_step_s / 60:.0f} |")


if __name__ == "__main__":
  main()
