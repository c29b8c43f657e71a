"""``fidelity``: the baseline every paper compares with — does the suspect agree with the
victim, feature by feature, more than an encoder trained independently would?

Statistic: the mean over feature dimensions j of the Pearson correlation, across public
images, of the victim's feature j and the suspect's feature j. A copy regressed onto the
victim's answers reproduces each of its coordinates (≈ 0.8–1); an independently trained
encoder has its own, arbitrarily labelled coordinates. The null distribution is that of the
same statistic with the suspect's dimensions relabelled at random (``permutations`` draws):
the observed labelling is one more draw from it when the suspect's coordinates have no
correspondence with the victim's — as for encoders whose initial weights were drawn
independently, since a network's output channels are exchangeable at initialisation.

Measured on the demo's encoders (``docs/results/verification.md``): per-image cosine and
CKA do not separate stolen from innocent (CKA 0.83 for the stolen copy, 0.82 for a target of
another seed); the per-dimension correlation does (0.8 vs ~0.05), and its relabelling null
absorbs what every pair of ReLU encoders shares (all features grow with an image's contrast).
"""

import numpy as np

from stolen_jax.verify.base import Context, Method, Outcome, decoy_p_value


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The (d, d) matrix of Pearson correlations of a's column i with b's column j (0 where a
  column is constant)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  a = a - a.mean(0)
  b = b - b.mean(0)
  na = np.linalg.norm(a, axis=0)
  nb = np.linalg.norm(b, axis=0)
  c = (a.T @ b) / np.maximum(np.outer(na, nb), 1e-12)
  c[(na < 1e-9)[:, None] | (nb < 1e-9)[None, :]] = 0.0
  return c


def applies(cfg, defense, victim_meta, data=None):
  return None


def suspect_sets(cfg, data, defense, shared_space: bool = True) -> dict:
  return {"public": data["public"][:int(cfg.num_samples)]}


def test(ctx: Context) -> Outcome:
  public = ctx.sets["public"]
  c = correlations(ctx.victim(public), ctx.answers["public"])
  d = c.shape[0]
  observed = float(np.mean(np.diag(c)))
  k = int(ctx.cfg.permutations)
  perms = np.argsort(ctx.rng.random((k, d)), axis=1)
  decoys = c[np.arange(d)[None, :], perms].mean(axis=1)
  return Outcome("fidelity", observed, decoy_p_value(observed, decoys),
                 float((observed - decoys.mean()) / max(decoys.std(), 1e-12)),
                 victim_samples=len(public), suspect_queries=len(public),
                 test=f"relabelling test of the mean per-dimension correlation ({k} draws)",
                 extra={"null_mean": float(decoys.mean()), "null_std": float(decoys.std())})


MIN_SAMPLES = 20


def samples(cfg, data) -> int:
  """Public images the correlations are computed on."""
  return min(int(cfg.num_samples), len(data["public"]))


METHOD = Method("fidelity", "agreement with the victim (every stealing paper's metric)",
                applies, suspect_sets, test, samples=samples, min_samples=MIN_SAMPLES)
