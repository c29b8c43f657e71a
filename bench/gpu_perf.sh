#!/usr/bin/env bash
# Issue 13's accelerator checks in one script (about 6-8 min on one GPU, plus setup):
#   1. the default steal end to end: ResNet-34, 2,500 images, 100 epochs (goal: <= 20 s
#      excluding compilation);
#   2. the paper's steal step, ResNet-34, λ=20, batch 64, fp32 and bf16 (goal: <= 5 ms);
#   3. the one-pass grouped BatchNorm against two passes;
#   4. SimCLR ResNet-18 at batch 256 in bf16 (goal: >= 120k images/s);
#   5. K=8 stacked steal cells against one.
#   bash bench/gpu_perf.sh [OUTDIR]          # SMOKE=1: the same commands, tiny, on a CPU
set -uo pipefail
out=${1:-bench_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee "$out/env.txt"
if [ -n "${SMOKE:-}" ]; then
  tiny=(--config.steal.width=0.0625 --config.steal.epochs=2)
  e2e_images=256; steps=4; stack_args=(--arch=resnet10 --width=0.0625 --cells=2 --steps=2)
  pre_tiny=(--config.pretrain.width=0.0625 --config.pretrain.batch_size=32); bn_width=0.0625
else
  tiny=(); e2e_images=2500; steps=128; stack_args=(--arch=resnet34 --width=1.0 --cells=8 --steps=20)
  pre_tiny=(); bn_width=1.0
fi
run() {  # Drops XLA/absl log lines, keeps results and errors.
  local limit=$1; shift; echo "== $*"
  timeout "$limit" python3 "$@" 2>&1 | grep -vE '^[IWE][0-9]{4} |oneDNN|InitializeLog|^\s*$'
}
{
  run 200 bench/steal_e2e.py --config=configs/steal_cifar10.py --images=$e2e_images "${tiny[@]}"
  run 200 bench/steal_e2e.py --config=configs/steal_cifar10.py --images=$e2e_images \
      --config.steal.dtype=bfloat16 "${tiny[@]}"
  run 120 bench/throughput.py --config=configs/steal_cifar10.py --stage=steal --steps=$steps "${tiny[@]}"
  run 120 bench/throughput.py --config=configs/steal_cifar10.py --stage=steal --steps=$steps \
      --config.steal.dtype=bfloat16 "${tiny[@]}"
  run 120 bench/bn_passes.py --arch=resnet34 --width=$bn_width --steps=$steps
  run 120 bench/throughput.py --config=configs/pretrain_simclr_cifar10.py --stage=pretrain \
      --steps=$steps --config.pretrain.dtype=bfloat16 "${pre_tiny[@]}"
  run 240 bench/stacked.py "${stack_args[@]}"
} 2>&1 | tee "$out/gpu_perf.txt"
