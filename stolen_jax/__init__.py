"""stolen_jax: StolenEncoder (Liu et al., CCS 2022) in JAX/Flax.

Stages: ``pretrain`` (SimCLR target encoders), ``steal`` (feature regression against a
metered query service), ``probe`` (downstream MLP classifiers). See README.md.
"""

from stolen_jax import xla_cpu as _xla_cpu

__version__ = "0.1.0"

# Before any JAX computation starts a backend: XLA reads its flags once (xla_cpu.py says why).
XLA_CPU_TUNED = _xla_cpu.apply()

# The library face (stolen_jax.api): the jobs as Python calls. ``stolen_jax.steal`` (and
# ``pretrain``, ``probe``, ``sweep``) name the stages' modules, which the code imports as
# such; they are made callable, so ``stolen_jax.steal(target, surrogate, budget=...)`` is
# ``stolen_jax.api.steal`` while ``stolen_jax.steal.run`` stays the stage.
from stolen_jax import api  # noqa: E402
from stolen_jax.api import (  # noqa: E402
    Encoder, PretrainResult, Result, StealResult, open_target)
from stolen_jax import pretrain, probe, steal, sweep  # noqa: E402

for _module in (pretrain, probe, steal, sweep):
  api.make_callable(_module)

__all__ = ["Encoder", "PretrainResult", "Result", "StealResult", "open_target", "pretrain",
           "probe", "steal", "sweep"]
