"""``job='steal'``: the attacker's side. Every registered attack (``stolen_jax.attacks``;
StolenEncoder's Algorithm 1 the default) runs through the same stages:

* ``settings`` — the surrogate set, the checks made before anything is paid, stage keys;
* ``query`` — the query stage: the attack's query plan paid through the metered service or
  the HTTP API, cached durably (``steal.query_budget`` checked for the whole plan first);
* ``trainer`` — the stolen encoder's pure, jitted step (StolenEncoder's own, or the generic
  step with the attack's loss) and the training loop;
* ``run`` — ``run`` (one steal) and its summary: queries, $, wall time, FLOPs, held-out
  fidelity; ``stack`` — StolenEncoder cells of a sweep trained as one stacked program.

The provider's side (its defense, the poisoning shadow encoder) is ``stolen_jax.defenses``.

StolenEncoder (``attacks.stolenencoder``): query the target once per surrogate image, then
train from random init to minimise L = L1 + λ·L2 (Eq. 3, 6, 7); its variants (§V-A4):
λ=0 is *w/o-aug*; ``variant='query_aug'`` pays for f_t(A(x)) every epoch;
``variant='pretrain_encoder'`` pre-trains on the surrogate set (0 queries). The official
release's feature normalisation, batch-summed distances and per-view BatchNorm passes are
options (``normalize_features``, ``reduction``, ``bn_passes``), recorded in the summary.
"""

from stolen_jax.steal.query import is_remote, open_remote, open_target
from stolen_jax.steal.run import heldout_failure, heldout_fidelity, run
from stolen_jax.steal.settings import (VARIANTS, attack_settings, load_surrogate,
                                           steal_settings, surrogate_count, validate_settings)
from stolen_jax.steal.stack import (STACKABLE_AXES, make_stacked_trainer, run_stack,
                                        stack_group, unstack_state)
from stolen_jax.steal.trainer import (build_stolen_model, default_one_pass, make_trainer,
                                          train_encoder)
from stolen_jax.attacks.stolenencoder import steal_step

__all__ = ["run", "run_stack", "stack_group", "make_stacked_trainer", "unstack_state",
           "make_trainer", "train_encoder", "build_stolen_model", "default_one_pass", "steal_step",
           "validate_settings", "steal_settings", "attack_settings", "surrogate_count",
           "load_surrogate", "heldout_failure", "heldout_fidelity", "open_target", "open_remote",
           "is_remote", "VARIANTS",
           "STACKABLE_AXES"]
