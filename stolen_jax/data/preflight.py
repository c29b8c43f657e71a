"""Preflight: every dataset a run will read is checked before its first stage.

A run that would fail on its third dataset after hours of pretraining, or spend minutes in
download retries offline, fails here in seconds instead, with every missing dataset listed
and how to prepare each. Checks are cheap: a file's or folder's presence and readability, a
TFDS dataset's prepared files (or, when it is not prepared, whether its download servers are
reachable at all).
"""

import functools
import os
import socket
from typing import Iterable, Optional

from stolen_jax.data import sources
from stolen_jax.errors import DataError

_TFDS_HOSTS = (("storage.googleapis.com", 443),)


@functools.lru_cache(maxsize=1)
def network_reachable(timeout: float = 3.0) -> bool:
  """Whether TFDS's download host answers (one quick TCP connect; no retries)."""
  for host, port in _TFDS_HOSTS:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      return True
    except OSError:
      continue
  return False


def _check_npz(path: str, split: str) -> Optional[str]:
  import numpy as np
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    return (f"npz file {path!r} does not exist; make it from the dataset's official file with "
            f"python -m stolen_jax.main --config=configs/prepare.py --config.prepare.format=FORMAT "
            f"--config.prepare.source=FILE_OR_DIR --config.prepare.output={path} "
            "(README \"Data\" lists the formats and where each file is published)")
  name, _ = sources.parse_split(split)
  try:
    with np.load(path, allow_pickle=False) as data:
      if f"x_{name}" not in data.files:
        return f"{path!r} has no array 'x_{name}' (it has {sorted(data.files)})"
  except Exception as e:
    return f"{path!r} is not a readable npz file ({type(e).__name__})"
  return None


def _check_folder(path: str, split: str) -> Optional[str]:
  path = os.path.expanduser(path)
  if not os.path.isdir(path):
    return f"image folder {path!r} does not exist"
  return None


def _check_embedded(name: str, split: str) -> Optional[str]:
  from stolen_jax.data import embedded
  if name not in embedded.GENERATORS:
    return f"unknown embedded dataset {name!r} (valid: {', '.join(sorted(embedded.GENERATORS))})"
  split_name, _ = sources.parse_split(split)
  if split_name not in embedded.SPLIT_SIZES:
    return f"embedded datasets have splits {sorted(embedded.SPLIT_SIZES)}, not {split_name!r}"
  return None


def _check_tfds(name: str, split: str, data_dir) -> Optional[str]:
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    return "tensorflow-datasets is not installed"
  if name.split("/")[0].split(":")[0] == "gtsrb":
    from stolen_jax.data import gtsrb  # noqa: F401  (registers the builder with TFDS)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:
    return f"TFDS has no dataset {name!r} ({str(e).splitlines()[0][:160]})"
  base_split = split.split("[")[0].split("+")[0].strip()
  from stolen_jax.data import hints, tfds_reader
  if not tfds_reader.tensorflow_available() and not tfds_reader._is_array_record(builder):
    return hints.needs_tensorflow(name, builder.data_dir_root)
  if builder.is_prepared():
    if builder.info.splits and base_split not in builder.info.splits:
      return f"TFDS {name} has no split {base_split!r} (it has {sorted(builder.info.splits)})"
    return None
  how = prepare_hint(name)
  if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    return (f"TFDS {name} is not prepared in {str(builder.data_dir_root)!r} and needs a manual "
            f"download; {how}")
  if not network_reachable():
    return (f"TFDS {name} is not prepared in {str(builder.data_dir_root)!r} and there is no network "
            f"to download it; {how}")
  return None  # Downloadable: tfds.load prepares it.


from stolen_jax.data.hints import PREPARE_FORMATS, prepare_hint  # noqa: E402,F401


def check_one(spec: str, split: str, data_dir=None) -> Optional[str]:
  """None when ``spec``'s ``split`` can be read, else why not and how to fix it."""
  kind, target = sources.parse_spec(spec)
  if kind == "npz":
    return _check_npz(target, split)
  if kind == "folder":
    return _check_folder(target, split)
  if kind == "embedded":
    return _check_embedded(target, split)
  return _check_tfds(target, split, data_dir)


def check(datasets: Iterable[tuple]) -> None:
  """Checks every (purpose, spec, split, data_dir); one DataError lists all the problems,
  one line per dataset (with the purposes and splits it was needed for)."""
  problems: dict = {}
  for purpose, spec, split, data_dir in datasets:
    why = check_one(spec, split, data_dir)
    if why:
      entry = problems.setdefault((spec, why), [])
      entry.append(f"{purpose} [{split}]")
  if problems:
    lines = [f"  - {spec} (for {', '.join(dict.fromkeys(uses))}): {why}"
             for (spec, why), uses in problems.items()]
    raise DataError(f"{len(problems)} dataset(s) the run needs are not available; nothing was "
                    "run:\n" + "\n".join(lines))
