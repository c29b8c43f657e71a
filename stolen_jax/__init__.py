"""stolen_jax: StolenEncoder (Liu et al., CCS 2022) in JAX/Flax.

Stages: ``pretrain`` (SimCLR target encoders), ``steal`` (feature regression against a
metered query service), ``probe`` (downstream MLP classifiers). See README.md.
"""

from stolen_jax import xla_cpu as _xla_cpu

__version__ = "0.1.0"

# Before any JAX computation starts a backend: XLA reads its flags once (xla_cpu.py says why).
XLA_CPU_TUNED = _xla_cpu.apply()
