#!/usr/bin/env bash
# Run a stolen_jax config on a local GPU machine (all visible GPUs, one process).
#   launch/gpu.sh configs/steal_cifar10.py [--workdir=DIR] [--config.x=y ...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv-gpu ] || { python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q -e '.[gpu]'; }
# Let XLA take GPU memory as needed rather than preallocating 75% (probes share the GPU).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec .venv-gpu/bin/python -m stolen_jax.main --config="$1" "${@:2}"
