#!/usr/bin/env bash
# Fresh-venv install time and size of the core install (`pip install -e .`), for two
# checkouts side by side, e.g. before and after TensorFlow became the [tf] extra:
#   git worktree add /tmp/before ec4c7c7 && bash bench/install_size.sh /tmp/before .
# (one after the other, the same pip cache; prints seconds, MB and whether TF came along)
set -u
declare -A srcs=([before]=${1:?usage: bench/install_size.sh BEFORE_CHECKOUT AFTER_CHECKOUT} [after]=${2:?})
for variant in before after; do
  src=${srcs[$variant]}
  rm -rf /tmp/venv_$variant
  start=$(date +%s.%N)
  python3 -m venv /tmp/venv_$variant && /tmp/venv_$variant/bin/pip install -q -e "$src" > /tmp/install_$variant.log 2>&1
  rc=$?
  end=$(date +%s.%N)
  size=$(du -sm /tmp/venv_$variant | cut -f1)
  tf=$(/tmp/venv_$variant/bin/python -c "import importlib.util as u; print(u.find_spec('tensorflow') is not None)")
  echo "$variant rc=$rc seconds=$(echo "$end - $start" | bc) size_mb=$size tensorflow=$tf"
done
