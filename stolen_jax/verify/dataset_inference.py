"""``dataset_inference``: Dziedzic et al., "Dataset Inference for Self-Supervised Models"
(NeurIPS 2022; cleverhans-lab/DatasetInferenceForSelfSupervisedModels).

An encoder's representations of its own training data sit in denser regions than those of
unseen data of the same distribution, and a stolen copy inherits that. The provider fits a
density model — scikit-learn's ``GaussianMixture`` (diagonal covariances, as their code for
encoders) — to the victim's representations of half of its private training data; the
suspect then answers the other half and a public held-out set of the same distribution,
and a one-sided Welch t-test (scipy) asks whether the private half is more likely under the
victim's model than the public set. Effect size: the difference of mean log-likelihoods
over the public set's standard deviation.

With a suspect of another feature dimension the density model is fitted to the suspect's
own answers on the first half instead (no shared space needed; it then costs those queries).
It can only show theft from a victim that fits its training data more closely than unseen
data: a victim trained briefly on plentiful data does not, and the method says "not shown".
"""

import numpy as np
from scipy import stats

from stolen_jax.verify.base import Context, Method, Outcome, unit

MIN_SAMPLES = 50


def half_size(cfg, data) -> int:
  """Images in each half of the private data (the density model's, the suspect's)."""
  return min(int(cfg.num_samples), len(data["private"]) // 2)


def _halves(cfg, data) -> tuple[np.ndarray, np.ndarray]:
  n = half_size(cfg, data)
  return data["private"][:n], data["private"][n:2 * n]


def applies(cfg, defense, victim_meta, data=None) -> str | None:
  if data is not None and data.get("private") is None:
    return ("needs the victim's private training data (verify.private; 'auto' reads it from "
            "a victim trained by this project)")
  return None


def suspect_sets(cfg, data, defense, shared_space: bool = True) -> dict:
  fit, held = _halves(cfg, data)
  sets = {"private_b": held, "public": data["public"][:int(cfg.num_samples)]}
  if not shared_space:  # The density model is then fitted in the suspect's own space.
    sets["private_a"] = fit
  return sets


def victim_sets(cfg, data, shared_space: bool = True) -> dict:
  """The half the victim's density model is fitted on (the victim's own answers)."""
  return {"private_a": _halves(cfg, data)[0]} if shared_space else {}


def test(ctx: Context) -> Outcome:
  from sklearn.mixture import GaussianMixture
  cfg = ctx.cfg
  fit_images = ctx.sets["private_a"]
  if ctx.shared_space:
    fit = ctx.victim(fit_images)
    where = "the victim's"
  else:
    fit = ctx.answers["private_a"]
    where = "the suspect's own (feature dimensions differ)"
  components = max(1, min(int(cfg.dataset_inference.components), len(fit) // 10))
  gmm = GaussianMixture(n_components=components, covariance_type="diag",
                        reg_covar=float(cfg.dataset_inference.reg_covar),
                        random_state=int(ctx.rng.integers(2 ** 31)))
  # Unit-norm representations: the likelihood then compares directions, not the scale a
  # stolen copy may not match.
  gmm.fit(unit(fit))
  private = gmm.score_samples(unit(ctx.answers["private_b"]))
  public = gmm.score_samples(unit(ctx.answers["public"]))
  result = stats.ttest_ind(private, public, equal_var=False, alternative="greater")
  effect = (private.mean() - public.mean()) / max(public.std(), 1e-12)
  queries = sum(len(ctx.answers[k]) for k in ("private_b", "public")) + (
      0 if ctx.shared_space else len(ctx.answers["private_a"]))
  return Outcome("dataset_inference", float(result.statistic), float(result.pvalue),
                 float(effect), victim_samples=len(fit_images), suspect_queries=queries,
                 test=f"Welch t-test, one-sided; GMM of {components} components on {where} "
                      "representations of half the private data",
                 extra={"private_loglik": float(private.mean()),
                        "public_loglik": float(public.mean())})


METHOD = Method("dataset_inference", "Dziedzic et al., NeurIPS 2022", applies, suspect_sets, test,
                samples=half_size, min_samples=MIN_SAMPLES, shared_space=False,
                victim_sets=victim_sets)
