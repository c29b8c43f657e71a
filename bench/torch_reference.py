"""The official release's steal step, re-expressed in PyTorch, for side-by-side CPU timing.

  # torch is not a dependency of stolen_jax; use any environment that has it, e.g.
  python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchenv/bin/python bench/torch_reference.py --arch=resnet34 --steps=5
  /tmp/torchenv/bin/python bench/torch_reference.py --arch=small --steps=20

Written for this project from the description in the reference notes (no code of the
official release is used): a torchvision-style ResNet with the CIFAR stem (3x3 stride-1
first convolution, no max-pool, no fc), features L2-normalised, the distance the Euclidean
norm summed over the batch and computed one sample and view at a time in a Python loop as
the official code does (``--loss=vectorized`` computes it in one call), the clean and the
augmented batch as two separate train-mode forward passes, one backward, SGD(lr 1e-3,
momentum 0.9, weight decay 5e-4). As in the issue's protocol the per-image PIL augmentation
is excluded: the augmented batch is a second, pre-made random batch.

Prints one JSON line: min and median seconds per step over ``--steps`` timed steps (after
one warm-up step), with torch's version and thread count.
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and an identity or 1x1 projection shortcut."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Sequential()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
  """CIFAR-stem ResNet feature extractor: (N,3,H,W) -> (N, 8*base) after global pooling."""

  def __init__(self, stage_sizes, base: int = 64):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU())
    blocks, cin = [], base
    for stage, count in enumerate(stage_sizes):
      cout = base * 2 ** stage
      for i in range(count):
        blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)

  def forward(self, x):
    return torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)


ARCHS = {"resnet34": ((3, 4, 6, 3), 64), "resnet18": ((2, 2, 2, 2), 64),
         "small": ((1, 1, 1, 1), 16)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", choices=sorted(ARCHS), default="resnet34")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--lambda_", type=float, default=20.0)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--loss", choices=["loop", "vectorized"], default="loop")
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  stages, base = ARCHS[args.arch]
  model = ResNet(stages, base).train()
  opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
  n = args.batch_size
  clean = torch.rand(n, 3, 32, 32)
  augmented = torch.rand(n, 3, 32, 32)
  target = F.normalize(torch.randn(n, 8 * base), dim=1)

  def distance(a, b):
    if args.loss == "vectorized":
      return torch.linalg.vector_norm(a - b, dim=1).sum()
    return sum(torch.linalg.vector_norm(a[i] - b[i]) for i in range(a.shape[0]))

  def step():
    feats = F.normalize(model(clean), dim=1)
    loss = distance(feats, target)
    if args.lambda_ > 0:
      loss = loss + args.lambda_ * distance(F.normalize(model(augmented), dim=1), target)
    opt.zero_grad()
    loss.backward()
    opt.step()

  step()  # Warm-up.
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  print(json.dumps({"system": "pytorch (official step re-expressed)", "arch": args.arch,
                    "batch_size": n, "lambda": args.lambda_, "loss": args.loss,
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "steps": args.steps, "s_per_step_min": round(min(times), 4),
                    "s_per_step_median": round(statistics.median(times), 4)}))


if __name__ == "__main__":
  main()
