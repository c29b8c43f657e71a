"""What a verification method is: (victim, suspect, data) -> statistic, p-value, queries.

A method names the image sets it needs the suspect's answers to (``suspect_sets``: the job
pays for each set once, whichever methods share it) and tests the null hypothesis "the
suspect was not derived from the victim" (``test``). Its p-value must be valid for an
innocent encoder: the worst bug this job can have is "stolen" for one.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass
class Context:
  """Everything a method may read.

  ``victim(images)``: the victim's true features (the provider holds them; not metered);
  ``answers[name]``: the suspect's (metered) features for the image set ``name`` of
  ``sets``; ``cfg``: the ``verify`` block; ``defense``: the provider's ``defense`` block
  (its watermark key); ``victim_meta``: what the victim's stage recorded.
  """
  victim: Callable[[np.ndarray], np.ndarray]
  sets: dict
  answers: dict
  cfg: object
  defense: object
  victim_meta: dict
  rng: np.random.Generator
  shared_space: bool


@dataclasses.dataclass
class Outcome:
  """One method's result; ``p_value`` None when the method did not apply (``note`` says why)."""
  method: str
  statistic: Optional[float] = None
  p_value: Optional[float] = None
  effect_size: Optional[float] = None
  victim_samples: int = 0
  suspect_queries: int = 0
  test: str = ""
  note: str = ""
  extra: dict = dataclasses.field(default_factory=dict)

  def record(self) -> dict:
    """The outcome as summary.json holds it."""
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Method:
  """One registered method (``verify.methods``)."""
  name: str
  reference: str
  # (cfg, defense, victim_meta, data) -> why it does not apply, or None.
  applies: Callable[..., Optional[str]]
  # (cfg, data, defense, shared_space) -> {set name: images} the suspect must answer.
  suspect_sets: Callable[..., dict]
  test: Callable[[Context], Outcome]
  # (cfg, data) -> the images per set its test would have; at least ``min_samples``.
  samples: Callable[..., int]
  min_samples: int
  shared_space: bool = True  # Needs the suspect's features in the victim's coordinates.
  # (cfg, data, shared_space) -> {set name: images} only the victim answers (not metered).
  victim_sets: Callable[..., dict] = lambda cfg, data, shared_space: {}


def decoy_p_value(observed: float, decoys: np.ndarray) -> float:
  """P(decoy statistic >= observed), counting the observed one: (1 + #{≥}) / (1 + K).

  Exact for an innocent suspect whenever the secret and the decoys are drawn alike and
  independently of it: then the observed statistic is one more exchangeable draw.
  """
  decoys = np.asarray(decoys, np.float64)
  return float((1 + np.sum(decoys >= observed)) / (1 + len(decoys)))


def unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
  """Rows scaled to unit ℓ2 norm."""
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)
