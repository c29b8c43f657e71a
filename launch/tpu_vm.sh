#!/usr/bin/env bash
# Run a stolen_jax config on a Cloud TPU VM: one host or a multi-host pod slice (every host
# runs the same command; they join through jax.distributed.initialize()'s auto-detection).
#
#   launch/tpu_vm.sh [--dry_run] [--create] NAME ZONE ACCELERATOR BUCKET CONFIG [flags...]
#   launch/tpu_vm.sh --create sj-v4 us-central2-b v4-32 my-bucket configs/steal_cifar10.py \
#       --config.pretrain.data_dir=gs://my-bucket/tfds --config.steal.data_dir=gs://my-bucket/tfds \
#       --config.probe.data_dir=gs://my-bucket/tfds
#
# --create    creates the VM (tpu-ubuntu2204-base) first.
# --dry_run   prints every command instead of running it.
# --prepare FORMAT=SOURCE   makes ~/data/FORMAT.npz on every worker from a dataset's official
#             file (job=prepare; SOURCE e.g. /mnt/BUCKET/raw/cifar-10-python.tar.gz), before
#             the job; repeatable. Use it as npz:~/data/FORMAT.npz in the job's flags.
# On each worker launch/tpu_setup.sh provisions Python >= 3.11 (the image's python3 is 3.10;
# uv installs 3.11 when no newer one is there), installs gcsfuse when missing, mounts the
# bucket, installs jax[tpu], prepares the data and runs the job.
# The checkout's tracked files are copied to every worker as they are in the working tree
# (uncommitted edits included; untracked files such as data/ or workdir/ never), via a
# tarball, not cloned from a remote. Every flag reaches the remote shell quoted as one word. BUCKET is mounted with gcsfuse at
# /mnt/BUCKET on every worker and the workdir is /mnt/BUCKET/workdir/<config>: every host
# must see the same workdir (checkpoints are written collectively; process 0 writes the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0 create=0 prepare_flags=()
while [[ "${1:-}" == --* ]]; do
  case $1 in
    --dry_run) dry=1 ;;
    --create) create=1 ;;
    --prepare) prepare_flags+=(--prepare "$2"); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
name=${1:?usage: tpu_vm.sh [--dry_run] [--create] NAME ZONE ACCELERATOR BUCKET CONFIG [flags]}
zone=$2 accel=$3 bucket=${4#gs://} config=$5; shift 5
multihost=False
case "$accel" in *-8|*-4|*-1) ;; *) multihost=True ;; esac  # v4-8, v5e-8, ... are one host.
stem=$(basename "$config" .py)
workdir=/mnt/$bucket/workdir/$stem
run() { if [[ $dry == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }

if [[ $create == 1 ]]; then
  run gcloud compute tpus tpu-vm create "$name" --zone "$zone" --accelerator-type "$accel" \
    --version tpu-ubuntu2204-base
fi
tarball=/tmp/stolen_jax_checkout.tar.gz
run bash -c "git ls-files -c -z | tar czf $tarball --null -T -"
run gcloud compute tpus tpu-vm scp "$tarball" "$name:stolen_jax.tar.gz" --zone "$zone" --worker=all
# The remote shell splits the command again: every word is quoted for it (%q), so a flag
# such as --config.sweep.axes='steal.lambda_=1;20' arrives whole.
job=$(printf '%q ' "$bucket" "${prepare_flags[@]}" -- python -m stolen_jax.main \
  "--config=$config" "--workdir=$workdir" "--config.multihost=$multihost" "$@")
remote="set -e
mkdir -p ~/stolen_jax && tar xzf ~/stolen_jax.tar.gz -C ~/stolen_jax
bash ~/stolen_jax/launch/tpu_setup.sh $job"
run gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$remote"
