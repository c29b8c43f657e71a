"""The XLA:CPU flag is applied only where XLA knows it and nobody overrode it."""

import json
import os

from stolen_jax import xla_cpu


def test_unknown_flag_is_refused_and_cached(tmp_path, monkeypatch):
  # An unknown flag would abort a process that starts a backend: the probe runs in a child.
  assert not xla_cpu.flag_supported("--xla_no_such_flag_for_stolen_jax=1", "test", str(tmp_path))
  assert xla_cpu.flag_supported("--xla_cpu_enable_fast_math=false", "test", str(tmp_path))
  cached = json.loads((tmp_path / "xla_flags-jaxlib-test.json").read_text())
  assert cached == {"--xla_no_such_flag_for_stolen_jax=1": False,
                    "--xla_cpu_enable_fast_math=false": True}
  # Answered from the cache, without a child process.
  monkeypatch.setattr(xla_cpu.subprocess, "run", None)
  assert xla_cpu.flag_supported("--xla_cpu_enable_fast_math=false", "test", str(tmp_path))


def test_apply_respects_opt_out_and_user_flags(monkeypatch, tmp_path):
  monkeypatch.setattr(xla_cpu, "_backends_started", lambda: False)
  monkeypatch.setattr(xla_cpu, "_CACHE_DIR", str(tmp_path))
  monkeypatch.setenv("STOLEN_JAX_XLA_CPU_TUNING", "0")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  assert not xla_cpu.apply()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
  monkeypatch.setenv("STOLEN_JAX_XLA_CPU_TUNING", "1")
  user = "--xla_cpu_experimental_ynn_fusion_type=+INDIVIDUAL_CONVOLUTION"
  monkeypatch.setenv("XLA_FLAGS", user)
  assert not xla_cpu.apply()  # The user's own setting of the option is kept.
  assert os.environ["XLA_FLAGS"] == user
  # Otherwise the flag is appended where this jaxlib knows it.
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  known = xla_cpu.flag_supported(xla_cpu.CONV_FLAG, xla_cpu._jaxlib_version(), str(tmp_path))
  assert xla_cpu.apply() == known
  assert (os.environ["XLA_FLAGS"].split()[-1] == xla_cpu.CONV_FLAG) == known


def test_flag_in_effect_in_this_process():
  import stolen_jax
  # conftest's XLA_FLAGS come first; the tuning flag is added when this jaxlib knows it.
  flags = os.environ["XLA_FLAGS"].split()
  assert "--xla_force_host_platform_device_count=8" in flags
  assert stolen_jax.XLA_CPU_TUNED == (xla_cpu.CONV_FLAG in flags)


def test_not_applied_once_a_backend_has_started(monkeypatch):
  import jax
  jax.numpy.zeros(1).block_until_ready()  # XLA has read its flags by now.
  monkeypatch.setenv("XLA_FLAGS", "")
  assert not xla_cpu.apply()
  assert os.environ["XLA_FLAGS"] == ""
