#!/usr/bin/env bash
# A sweep on a SLURM cluster: run this on the login node (in the project's venv, with
# pip install -e '.[slurm]'); the sweep driver submits one job array of its cells through
# submitit (sweep.executor=submitit), each cell one job with RESOURCES, all sharing WORKDIR
# (a shared filesystem: NFS, Lustre) through its stage leases. The driver waits for the
# array and writes the table; a rerun submits only the cells that have no record.
#
#   launch/slurm_sweep.sh [--dry_run] WORKDIR RESOURCES CONFIG [flags...]
#   launch/slurm_sweep.sh /shared/sj slurm_partition=gpu,gpus_per_node=1,cpus_per_task=8,timeout_min=240 \
#       configs/paper/attacks_x_defenses.py:paper
#
# RESOURCES are submitit's parameters (slurm_partition, gpus_per_node, cpus_per_task,
# mem_gb, timeout_min, slurm_account, ...). --dry_run prints the command instead.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
[[ "${1:-}" == --dry_run ]] && dry=1 && shift
workdir=${1:?usage: slurm_sweep.sh [--dry_run] WORKDIR RESOURCES CONFIG [flags]}
resources=$2 config=$3; shift 3
cmd=(python -m stolen_jax.main "--config=$config" "--workdir=$workdir"
     --config.sweep.executor=submitit "--config.sweep.resources=$resources" "$@")
if [[ $dry == 1 ]]; then printf '%q ' "${cmd[@]}"; echo; else "${cmd[@]}"; fi
