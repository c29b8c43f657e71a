"""XLA:CPU tuning applied before JAX starts its backends (imported by ``stolen_jax``).

Recent XLA:CPU hands convolutions to YNNPACK by default. On the CPUs measured here its
weight-gradient convolutions are 3x slower than XLA's Eigen path, and its forward and
input-gradient convolutions about 2x slower (bench/RESULTS.md, "XLA:CPU convolutions":
a whole ResNet-34 steal step went from 6.7 s to 4.6 s). So this module turns YNNPACK off for
convolutions only (``--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION``);
its element-wise fusions stay on because they are faster.

The flag exists only in XLA builds that have YNNPACK, and an XLA that does not know a flag
aborts the process when the backend starts. So the flag is first tried once in a child
process, and the answer is cached per jaxlib version. ``STOLEN_JAX_XLA_CPU_TUNING=0`` turns
all of this off. A flag for the same option that is already in ``XLA_FLAGS`` is kept as it is.
"""

import json
import os
import subprocess
import sys

CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION"
_OPTION = CONV_FLAG.split("=")[0]
_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "stolen_jax")


def _jaxlib_version() -> str | None:
  try:
    from importlib import metadata
    return metadata.version("jaxlib")
  except Exception:  # noqa: BLE001 - no jaxlib: nothing to tune.
    return None


def flag_supported(flag: str, jaxlib_version: str, cache_dir: str | None = None) -> bool:
  """Whether this jaxlib's XLA accepts ``flag``: tried once in a child process (an unknown
  flag aborts the process that starts a backend), then cached per jaxlib version."""
  cache_dir = cache_dir or _CACHE_DIR
  path = os.path.join(cache_dir, f"xla_flags-jaxlib-{jaxlib_version}.json")
  try:
    with open(path) as f:
      known = json.load(f)
    if flag in known:
      return bool(known[flag])
  except (OSError, ValueError):
    known = {}
  env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  try:
    ok = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
                        env=env, capture_output=True, timeout=120).returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False  # Not cached: a later process tries again.
  known[flag] = ok
  # Not stages.write_json_atomic: its process-0 check would start a JAX backend, and this runs
  # before any backend may start (XLA reads its flags then).
  try:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      json.dump(known, f)
    os.replace(tmp, path)  # Atomic: concurrent test workers may probe at once.
  except OSError:
    pass
  return ok


def _backends_started() -> bool:
  """Whether JAX has already started a backend (then XLA has read its flags: too late)."""
  try:
    from jax._src import xla_bridge
    return bool(getattr(xla_bridge, "_backends", None))
  except Exception:  # noqa: BLE001 - a JAX without that module: assume not started.
    return False


def apply() -> bool:
  """Adds the convolution flag to ``XLA_FLAGS`` where it is safe and not overridden.

  Returns whether the flag is in effect. Call before the first JAX computation: XLA reads
  ``XLA_FLAGS`` once, when the first backend starts.
  """
  if os.environ.get("STOLEN_JAX_XLA_CPU_TUNING", "1") == "0" or _backends_started():
    return False
  flags = os.environ.get("XLA_FLAGS", "")
  if _OPTION in flags:
    return CONV_FLAG in flags.split()
  version = _jaxlib_version()
  if version is None or not flag_supported(CONV_FLAG, version):
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {CONV_FLAG}".strip()
  return True
