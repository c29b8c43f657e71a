"""Process-wide JAX settings: the persistent compilation cache."""

import os

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "stolen_jax", "jax_cache")


def enable_compilation_cache(cache_dir: str | None = None) -> str:
  """Turns on JAX's persistent compilation cache (a rerun skips most compile time).

  ``STOLEN_JAX_CACHE_DIR`` overrides the default location.
  """
  cache_dir = cache_dir or os.environ.get("STOLEN_JAX_CACHE_DIR", DEFAULT_CACHE_DIR)
  os.makedirs(cache_dir, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return cache_dir
