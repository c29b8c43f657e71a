#!/usr/bin/env bash
# The accelerator benchmark, one script: trainer throughput for the paper's configs
# (fp32 and bf16, SimCLR and MoCo), every architecture's forward (feature extraction) and
# the probe MLP, then the demo pipeline end to end (scan dispatch, Orbax, probes).
# ONLY=zoo runs just the MoCo and architecture lines.
#   bash bench/gpu_suite.sh [OUTDIR]
set -uo pipefail
out=${1:-bench_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" | tee "$out/env.txt"
run() { echo "== $*"; timeout 240 python3 bench/throughput.py "$@" 2>&1 | grep -E '^\{|official|Error|error' ; }
{
  if [ "${ONLY:-}" != zoo ]; then
  run --config=configs/pretrain_simclr_cifar10.py --stage=pretrain --steps=128
  run --config=configs/pretrain_simclr_cifar10.py --stage=pretrain --steps=128 --config.pretrain.dtype=bfloat16
  run --config=configs/steal_cifar10.py --stage=steal --steps=128
  run --config=configs/steal_cifar10.py --stage=steal --steps=128 --config.steal.dtype=bfloat16
  run --config=configs/steal_cifar10.py --stage=steal --steps=128 --config.steal.lambda_=0
  run --config=configs/steal_cifar10.py --stage=steal --steps=128 --config.steal.arch=resnet18
  run --config=configs/steal_cifar10.py --stage=steal --steps=128 --config.steal.arch=resnet10 --config.steal.width=0.25
  fi
  run --config=configs/pretrain_moco_cifar10.py --stage=pretrain --steps=128
  for arch in resnet18 resnet34 vgg19 vgg19_bn densenet121 mobilenetv2 shufflenetv2; do
    run --config=configs/steal_cifar10.py --stage=probe --probe_images=16384 --config.steal.arch=$arch
  done
} 2>&1 | tee "$out/throughput.txt"
[ -n "${SKIP_DEMO:-}" ] && exit 0
echo "== demo pipeline"
start=$SECONDS
timeout 300 python3 -m stolen_jax.main --config=configs/demo.py --workdir="$out/demo" 2>&1 \
  | grep -E "compiled|kNN|steal:|probe |^\||Attack|Stage|Error|error" | tee "$out/demo.txt"
echo "demo wall $((SECONDS - start)) s" | tee -a "$out/demo.txt"
cp "$out/demo/results.md" "$out/results.md" 2>/dev/null || true
rm -rf "$out/demo"
