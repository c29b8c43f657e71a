#!/usr/bin/env bash
# A sweep on a Cloud TPU VM slice as one Ray cluster: every worker is set up as tpu_vm.sh
# does (launch/tpu_setup.sh: Python, the bucket at /mnt/BUCKET, jax[tpu] and ray), worker 0
# runs the Ray head, the others join it, and worker 0 runs the sweep with
# sweep.executor=ray: each cell is a task on one host (resources: one TPU host each), all
# sharing /mnt/BUCKET/workdir/<config> through its stage leases.
#
#   launch/ray_tpu.sh [--dry_run] NAME ZONE BUCKET CONFIG [flags...]
#   launch/ray_tpu.sh sj-v4 us-central2-b my-bucket configs/paper/fig2_lambda.py:paper
#
# --dry_run prints every command instead of running it. The VM must exist (tpu_vm.sh --create).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
[[ "${1:-}" == --dry_run ]] && dry=1 && shift
name=${1:?usage: ray_tpu.sh [--dry_run] NAME ZONE BUCKET CONFIG [flags]}
zone=$2 bucket=${3#gs://} config=$4; shift 4
stem=$(basename "${config%%:*}" .py)
run() { if [[ $dry == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
ssh() { run gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" "$@"; }

tarball=/tmp/stolen_jax_checkout.tar.gz
run bash -c "git ls-files -c -z | tar czf $tarball --null -T -"
run gcloud compute tpus tpu-vm scp "$tarball" "$name:stolen_jax.tar.gz" --zone "$zone" --worker=all
# 1. Every worker: the checkout, Python, the bucket, jax[tpu] and Ray (no job yet).
ssh --worker=all --command "mkdir -p ~/stolen_jax && tar xzf ~/stolen_jax.tar.gz -C ~/stolen_jax && SJ_PIP_ARGS='ray>=2.9' bash ~/stolen_jax/launch/tpu_setup.sh $(printf '%q' "$bucket")"
# 2. The head on worker 0, the others join it (its internal address, from gcloud).
if [[ $dry == 1 ]]; then
  head_ip=HEAD_IP
else
  head_ip=$(gcloud compute tpus tpu-vm describe "$name" --zone "$zone" \
    --format='value(networkEndpoints[0].ipAddress)')
fi
ssh --worker=0 --command "~/sj/bin/ray start --head --port=6379 --resources='{\"tpu_host\": 1}'"
ssh --worker=all --command "[ \"\$(hostname -I | cut -d' ' -f1)\" = $head_ip ] || ~/sj/bin/ray start --address=$head_ip:6379 --resources='{\"tpu_host\": 1}'"
# 3. The sweep, driven from worker 0: one cell per TPU host at a time.
job=$(printf '%q ' python -m stolen_jax.main "--config=$config" \
  "--workdir=/mnt/$bucket/workdir/$stem" --config.sweep.executor=ray \
  --config.sweep.ray_address=auto --config.sweep.resources=tpu_host=1,num_cpus=0 "$@")
ssh --worker=0 --command "cd ~/stolen_jax && ~/sj/bin/$job"
