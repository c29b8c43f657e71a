"""Metric logging through clu, with a JSON-lines copy and a progress/ETA reporter.

TensorBoard events come from clu's writer where TensorFlow is installed (``[tf]``), else from
tensorboardX (``tb_writer``); the console and JSON-lines outputs work everywhere.
Only process 0 writes, so a multi-host job logs once.
"""

import json
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging


def _to_python(value):
  value = np.asarray(value)
  return value.item() if value.ndim == 0 else value.tolist()


def _clu_writer(logdir: str):
  """clu's default writer (TensorBoard through TensorFlow, and the log) where TensorFlow is
  installed (``[tf]``: clu's writers package imports it); else TensorBoard through
  tensorboardX and the log (``tb_writer``); else None (the console and metrics.jsonl still
  get every value)."""
  try:
    import tensorflow  # noqa: F401  (clu.metric_writers imports it as it loads)
    from clu import metric_writers
    return metric_writers.create_default_writer(logdir, asynchronous=False)
  except ImportError:
    pass
  try:
    from stolen_jax.tb_writer import TensorboardXWriter
    return TensorboardXWriter(logdir)
  except ImportError as e:
    logging.warning("no TensorBoard writer (%s); metrics go to the console and %s", e,
                    os.path.join(logdir, "metrics.jsonl"))
    return None


class Writer:
  """``write_scalars(step, {...})`` to clu (TensorBoard + log) and ``metrics.jsonl``."""

  def __init__(self, logdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.logdir = logdir
    self._clu = None
    self._jsonl = None
    if not self.enabled:
      return
    os.makedirs(logdir, exist_ok=True)
    self._jsonl = open(os.path.join(logdir, "metrics.jsonl"), "a")
    self._clu = _clu_writer(logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    scalars = {k: _to_python(v) for k, v in scalars.items()}
    if self._clu is not None:
      self._clu.write_scalars(int(step), scalars)
    else:
      logging.info("[%d] %s", step, ", ".join(f"{k}={v:.5g}" for k, v in scalars.items()))
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    if self.enabled and self._clu is not None:
      self._clu.write_hparams(dict(hparams))

  def close(self) -> None:
    if self._clu is not None:
      self._clu.close()
    if self._jsonl is not None:
      self._jsonl.close()


class Progress:
  """A stage's progress: a tqdm bar on a terminal; elsewhere (CI, files) a plain line with
  step, steps/s, images/s and ETA at most every ``every_secs`` seconds."""

  def __init__(self, total_steps: int, images_per_step: int, first_step: int = 0,
               every_secs: float = 30.0, name: str = "train"):
    from stolen_jax import console
    self.total, self.images_per_step, self.every = total_steps, images_per_step, every_secs
    self.name = name
    self._t0 = self._last = time.perf_counter()
    self._step0 = self._shown = first_step
    self._bar = console.bar(name, total_steps, initial=first_step) if console.interactive() else None
    self._plain = (not console.interactive() and not console._quiet["on"]
                   and jax.process_index() == 0)

  def update(self, step: int, force: bool = False, **postfix) -> float:
    """Advances to ``step``; returns the steps/s since the first update."""
    now = time.perf_counter()
    rate = (step - self._step0) / max(now - self._t0, 1e-9)
    if self._bar is not None:
      self._bar.update(step - self._shown)
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
    elif force or now - self._last >= self.every:
      self._last = now
      eta = (self.total - step) / rate if rate > 0 else float("inf")
      text = (f"{self.name}: step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%), "
              f"{rate:.2f} steps/s, {rate * self.images_per_step:.1f} images/s, ETA "
              f"{format_seconds(eta)}" + "".join(f", {k} {v:.4g}" for k, v in postfix.items()))
      if self._plain:
        print(text, file=sys.stderr, flush=True)
      elif jax.process_index() == 0:
        logging.info(text)
    self._shown = step
    return rate

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()

  def reset_clock(self, step: int) -> None:
    """Restarts timing (after compilation) so rates measure steady state."""
    self._t0 = time.perf_counter()
    self._step0 = step


def format_seconds(s: float) -> str:
  """"1m05s", "2h03m00s", "?" for an unknown duration."""
  if not np.isfinite(s):
    return "?"
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
