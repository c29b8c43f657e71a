#!/usr/bin/env bash
# Runs ON each Cloud TPU VM worker (launch/tpu_vm.sh copies the checkout and calls it):
# provisions Python >= 3.11 (the tpu-ubuntu2204-base image's python3 is 3.10, which this
# project does not support), installs gcsfuse when missing and mounts BUCKET, makes the
# virtualenv, prepares datasets from their official files (job=prepare), then runs the job.
#
#   bash launch/tpu_setup.sh BUCKET [--prepare FORMAT=SOURCE]... -- python -m stolen_jax.main ...
#
# SOURCE may be a path under /mnt/BUCKET; the output is ~/data/FORMAT.npz on every worker
# (use npz:~/data/FORMAT.npz in the job's flags). SJ_DRY_RUN=1 prints each command instead of
# running it. SJ_PIP_ARGS adds arguments to the project's pip install (tests/test_launch.py
# runs this script for real with a Python 3.10 first on PATH, a real uv and venv, and
# SJ_PIP_ARGS=--no-deps so that it does not download jax[tpu]; only sudo, gcsfuse and the
# mount are stubbed there).
set -euo pipefail
cd "$(dirname "$0")/.."
bucket=${1:?usage: tpu_setup.sh BUCKET [--prepare FORMAT=SOURCE]... -- COMMAND...}; shift
prepares=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case $1 in
    --prepare) prepares+=("$2"); shift 2 ;;
    *) echo "tpu_setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "${1:-}" == "--" ]] && shift
run() { if [[ "${SJ_DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }

# 1. A Python >= 3.11: one already on PATH, else uv installs one (uv itself from pip).
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
if [[ -z "$python" ]]; then
  echo "tpu_setup: no Python >= 3.11 on PATH ($(python3 --version 2>&1)); installing one with uv"
  uv=$(command -v uv || echo "$HOME/.local/bin/uv")
  [[ -x "$uv" ]] || run python3 -m pip install --user --quiet uv
  run "$uv" python install 3.11
  run "$uv" venv --python 3.11 "$HOME/sj"
  # uv makes a venv without pip (unless it downloads one with --seed): the Python's own
  # bundled pip, offline.
  run "$HOME/sj/bin/python" -m ensurepip --upgrade --default-pip
else
  echo "tpu_setup: using $python ($("$python" --version 2>&1))"
  run "$python" -m venv "$HOME/sj"
fi

# 2. gcsfuse (not on the base image) and the shared workdir's bucket.
if ! command -v gcsfuse >/dev/null; then
  echo "tpu_setup: installing gcsfuse"
  run bash -c 'echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse'
fi
run sudo mkdir -p "/mnt/$bucket"
if ! mountpoint -q "/mnt/$bucket" 2>/dev/null; then
  # Mounted by root, owned by the user the job runs as (else the workdir is read-only to it).
  run sudo gcsfuse --implicit-dirs --uid "$(id -u)" --gid "$(id -g)" --file-mode 664 \
    --dir-mode 775 -o allow_other "$bucket" "/mnt/$bucket"
fi

# 3. The project, with jax[tpu] (libtpu comes from PyPI).
# shellcheck disable=SC2086  # SJ_PIP_ARGS: words on purpose.
run "$HOME/sj/bin/python" -m pip install --quiet ${SJ_PIP_ARGS:-} -e '.[tpu]' 

# 4. Datasets from their official files (README "Data"), then the job.
for item in "${prepares[@]}"; do
  fmt=${item%%=*} src=${item#*=}
  run "$HOME/sj/bin/python" -m stolen_jax.main --config=configs/prepare.py \
    --config.prepare.format="$fmt" --config.prepare.source="$src" \
    --config.prepare.output="$HOME/data/$fmt.npz"
done
if [[ $# -gt 0 ]]; then
  [[ "$1" == python || "$1" == python3 ]] && shift && set -- "$HOME/sj/bin/python" "$@"
  run "$@"
fi
