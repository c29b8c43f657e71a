#!/usr/bin/env bash
# Table II's CIFAR-10 row at full width on one accelerator, in one prepared script.
#
#   bash bench/gpu_paper_row.sh DATA_DIR [WORKDIR]      # on a GPU/TPU machine
#   bash bench/gpu_paper_row.sh --smoke [WORKDIR]       # the same commands, tiny, on a CPU
#
# DATA_DIR holds the shared .npz sets (cifar10.npz: 25k train images, tinyimagenet32.npz,
# mnist.npz). Part 1: pre-trains the paper's target (SimCLR ResNet-18, batch 256, Adam 1e-3,
# bf16 compute, kNN monitor) for TARGET_EPOCHS (default 200) on the 25k CIFAR-10 images;
# steals it with the paper's defaults (ResNet-34, λ=20, ℓ2, flip+jitter+grayscale, 100
# epochs, S=64) from 1,250 Tiny-ImageNet images (5%); probes both on MNIST and CIFAR-10 test
# with the paper's MLP (500 epochs). Part 2 (PART2=1, the default): the w/o-aug (λ=0) and
# query-aug cells on the same target and answers. Everything is keyed and resumable: a second
# session with the same WORKDIR restores finished stages; a larger TARGET_EPOCHS trains a new
# target stage. Writes docs/results/gpu_paper_row.md (tables, stage times, commands).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
if [[ $SMOKE == 0 ]]; then
  DATA=${1:?usage: bench/gpu_paper_row.sh DATA_DIR [WORKDIR] | --smoke [WORKDIR]}; shift
else
  DATA=$(mktemp -d)
  python - "$DATA" <<'PY'
import sys, numpy as np
from stolen_jax.data import embedded
out = sys.argv[1]
for name, src in (("cifar10", "shapes"), ("tinyimagenet32", "scenes"), ("mnist", "glyphs")):
  xtr, ytr, _ = embedded.load(src, "train"); xte, yte, _ = embedded.load(src, "test")
  np.savez(f"{out}/{name}.npz", x_train=xtr[:256], y_train=ytr[:256], x_test=xte[:128], y_test=yte[:128])
PY
fi
WORKDIR=${1:-workdir/gpu_paper_row}
OUT=${OUT_MD:-docs/results/gpu_paper_row.md}
[[ $SMOKE == 1 ]] && OUT=${OUT_MD:-$WORKDIR/gpu_paper_row.md}
TARGET_EPOCHS=${TARGET_EPOCHS:-200}
[[ $SMOKE == 1 ]] && TARGET_EPOCHS=1
PART2=${PART2:-1}

COMMON=(
  --config=configs/steal_cifar10.py --workdir="$WORKDIR"
  --config.pretrain.dataset="npz:$DATA/cifar10.npz" --config.pretrain.epochs="$TARGET_EPOCHS"
  --config.pretrain.dtype=bfloat16
  --config.pretrain.knn.dataset="npz:$DATA/cifar10.npz" --config.pretrain.knn.every_epochs=25
  --config.steal.surrogate="npz:$DATA/tinyimagenet32.npz" --config.steal.surrogate_size=1250
  --config.steal.heldout_split=test
  --config.probe.datasets="npz:$DATA/mnist.npz,npz:$DATA/cifar10.npz"
)
if [[ $SMOKE == 1 ]]; then
  COMMON+=(
    --config.pretrain.arch=resnet10 --config.pretrain.width=0.0625
    --config.pretrain.batch_size=64 --config.pretrain.image_size=16 --config.pretrain.dtype=float32
    --config.pretrain.knn.num_train=64 --config.pretrain.knn.num_test=32 --config.pretrain.knn.k=5
    --config.steal.arch=resnet10 --config.steal.width=0.0625 --config.steal.surrogate_size=64
    --config.steal.epochs=1 --config.steal.batch_size=32 --config.steal.image_size=16
    --config.steal.eval_heldout=32
    --config.probe.epochs=2 --config.probe.image_size=16 --config.probe.num_train=64
    --config.probe.num_test=32 --config.probe.hidden="(32,16)"
  )
fi

declare -a CELLS=("stolenencoder" )
[[ $PART2 == 1 ]] && CELLS+=("wo_aug" "query_aug")
mkdir -p "$(dirname "$OUT")" "$WORKDIR"
{
  echo "# Table II, CIFAR-10 row, one accelerator ($(date -u +%Y-%m-%d))"
  echo
  echo "Machine: $(python -c 'import jax; d=jax.devices()[0]; print(d.platform, d.device_kind, "x", jax.device_count())'), jax $(python -c 'import jax; print(jax.__version__)')"
  echo "Target epochs: $TARGET_EPOCHS (smoke: $SMOKE)"
} > "$OUT.tmp"

for cell in "${CELLS[@]}"; do
  extra=()
  case $cell in
    wo_aug) extra=(--config.steal.lambda_=0) ;;
    query_aug) extra=(--config.steal.variant=query_aug) ;;
  esac
  cmd=(python -m stolen_jax.main "${COMMON[@]}" "${extra[@]}")
  echo "== $cell: ${cmd[*]}"
  t0=$(date +%s)
  "${cmd[@]}"
  t1=$(date +%s)
  {
    echo; echo "## $cell ($((t1 - t0)) s wall, this run)"; echo
    echo '```'; echo "${cmd[*]}"; echo '```'; echo
    cat "$WORKDIR/results.md"
    python - "$WORKDIR" <<'PY'
import json, sys, glob, os
w = sys.argv[1]
r = json.load(open(f"{w}/results.json"))
steal = json.load(open(os.path.join(r["stages"]["steal"], "summary.json")))
pre = [json.load(open(p)) for p in glob.glob(f"{w}/pretrain/*/summary.json")]
for p in pre:
  print(f"\nTarget stage: {p.get('final_step')} steps, kNN accuracy {p.get('knn_accuracy')}, "
        f"train {p.get('train_s')} s ({p.get('images_per_s')} images/s)")
print(f"Steal: {steal.get('queries')} queries, train {steal.get('train_s')} s, "
      f"compile {steal.get('compile_s')} s, held-out {steal.get('heldout')}")
PY
  } >> "$OUT.tmp"
done
mv "$OUT.tmp" "$OUT"
echo "written: $OUT"
