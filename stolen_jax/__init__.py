"""stolen_jax: StolenEncoder (Liu et al., CCS 2022) in JAX/Flax.

Stages: ``pretrain`` (SimCLR target encoders), ``steal`` (feature regression against a
metered query service), ``probe`` (downstream MLP classifiers). See README.md.
"""

__version__ = "0.1.0"
