"""Encoder-as-a-service: the target encoder behind a metered query API.

``QueryService`` answers ``query(images) -> features``, counts one query per image,
enforces a budget and applies the provider's defense; ``FeatureCache`` keeps the
attacker's paid answers on disk so that nothing paid for is ever paid again.
"""

from stolen_jax.eaas.cache import FeatureCache
from stolen_jax.eaas.query import query_with_cache
from stolen_jax.eaas import answers  # noqa: F401  (eaas.answers: the checks of answers)
from stolen_jax.eaas.service import QueryBudgetExceeded, QueryService

__all__ = ["FeatureCache", "query_with_cache", "QueryBudgetExceeded", "QueryService"]
