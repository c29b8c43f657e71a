#!/usr/bin/env bash
# Run a stolen_jax config on a Cloud TPU VM (single host or a pod slice: every host runs
# the same command; jax.distributed.initialize() joins them when --config.multihost=True).
#
#   launch/tpu_vm.sh NAME ZONE ACCELERATOR CONFIG [extra flags...]
#   launch/tpu_vm.sh sj-v4 us-central2-b v4-32 configs/steal_cifar10.py --config.steal.data_dir=gs://b/tfds
#
# The VM must exist (gcloud compute tpus tpu-vm create NAME --zone ZONE
#   --accelerator-type ACCELERATOR --version tpu-ubuntu2204-base).
# Use a gs:// --workdir on pods so every host sees the same checkpoints.
set -euo pipefail
name=$1 zone=$2 accel=$3 config=$4; shift 4
multihost=False
case "$accel" in *-8) ;; *) multihost=True ;; esac  # v4-8/v5e-8 are one host.
repo=${STOLEN_JAX_REPO:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo .)}
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "
  set -e
  [ -d stolen_jax ] || git clone $repo stolen_jax
  cd stolen_jax && git pull --ff-only || true
  python3 -m venv ~/sj && . ~/sj/bin/activate
  pip install -q -e '.[tpu]' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
  python -m stolen_jax.main --config=$config --config.multihost=$multihost $*
"
