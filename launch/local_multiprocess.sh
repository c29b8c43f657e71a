#!/usr/bin/env bash
# N local CPU processes standing in for an N-host pod: the same command in every process,
# joined through a coordinator on 127.0.0.1 (gloo collectives), and waited for. If one
# process fails, the others are stopped and the script exits with its status.
#
#   launch/local_multiprocess.sh 2 configs/demo.py --workdir=workdir/demo_2proc [--config.x=y ...]
#
# DEVICES_PER_PROCESS (default 1) fake CPU devices per process; PORT (default: a free one).
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: local_multiprocess.sh N CONFIG [flags...]}; config=${2:?config}; shift 2
port=${PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
devices=${DEVICES_PER_PROCESS:-1}
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu \
    python -m stolen_jax.main --config="$config" --config.multihost=True \
      --config.coordinator_address="127.0.0.1:$port" --config.num_processes="$n" \
      --config.process_id="$i" "$@" &
  pids+=($!)
done
status=0
running=("${pids[@]}")
while ((${#running[@]})); do
  still=()
  for p in "${running[@]}"; do
    if kill -0 "$p" 2>/dev/null; then still+=("$p"); continue; fi
    wait "$p"; rc=$?
    if [[ $rc != 0 && $status == 0 ]]; then
      status=$rc
      echo "local_multiprocess: process $p exited with $rc; stopping the others" >&2
      kill "${pids[@]}" 2>/dev/null
    fi
  done
  running=("${still[@]}")
  ((${#running[@]})) && sleep 1
done
exit $status
