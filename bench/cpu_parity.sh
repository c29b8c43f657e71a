#!/usr/bin/env bash
# Side by side on this machine's CPU: our steal step (bench/throughput.py, with and without
# the XLA:CPU convolution setting of stolen_jax/xla_cpu.py) against the official step
# re-expressed in PyTorch (bench/torch_reference.py), alternating, several rounds.
#
#   TORCH_PYTHON=/tmp/torchenv/bin/python bash bench/cpu_parity.sh [ROUNDS] [OUT.jsonl]
#
# TORCH_PYTHON: an interpreter with torch (not a stolen_jax dependency), e.g. a venv made by
#   python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
# Prints one JSON line per run and, at the end, min and median s/step per system and network.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-$(mktemp /tmp/cpu_parity.XXXXXX.jsonl)}
PY=${PYTHON:-python}
TORCH_PY=${TORCH_PYTHON:?set TORCH_PYTHON to a python that has torch}
: > "$OUT"
ours() {  # name, tuning (1/0), steps, extra flags...
  local name=$1 tuning=$2 steps=$3; shift 3
  STOLEN_JAX_XLA_CPU_TUNING=$tuning TF_CPP_MIN_LOG_LEVEL=3 "$PY" bench/throughput.py \
      --config=configs/steal_cifar10.py --stage=steal --steps="$steps" "$@" 2>/dev/null \
    | head -1 | "$PY" -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'system': '$name', 'net': '$NET', 's_min': r['ms_per_step_min']/1000, 's_median': r['ms_per_step_median']/1000}))" \
    | tee -a "$OUT"
}
theirs() {  # arch, steps
  "$TORCH_PY" bench/torch_reference.py --arch="$1" --steps="$2" \
    | "$PY" -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'system': 'pytorch '+r['torch'], 'net': '$NET', 's_min': r['s_per_step_min'], 's_median': r['s_per_step_median']}))" \
    | tee -a "$OUT"
}
for round in $(seq "$ROUNDS"); do
  NET="small ResNet (16-32-64-128)"
  theirs small 20
  ours "stolen_jax (Eigen convolutions)" 1 20 --config.steal.arch=resnet10 --config.steal.width=0.25
  ours "stolen_jax (YNNPACK convolutions)" 0 20 --config.steal.arch=resnet10 --config.steal.width=0.25
  NET="ResNet-34"
  theirs resnet34 5
  ours "stolen_jax (Eigen convolutions)" 1 5
  ours "stolen_jax (YNNPACK convolutions)" 0 5
done
"$PY" - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\nsteal step, batch 64, λ=20, {sys.argv[2]} alternating rounds (min over rounds of the per-run"
      " min; median over rounds of the per-run median), s/step")
print("| network | system | min | median |\n|---|---|---|---|")
for key in dict.fromkeys((r["net"], r["system"]) for r in rows):
  sel = [r for r in rows if (r["net"], r["system"]) == key]
  print(f"| {key[0]} | {key[1]} | {min(r['s_min'] for r in sel):.3f} | "
        f"{statistics.median(r['s_median'] for r in sel):.3f} |")
EOF
