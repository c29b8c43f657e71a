"""TensorBoard event files through tensorboardX, so metrics reach TensorBoard on an install
without TensorFlow (``pip install stolen_jax`` is light; ``[tf]`` adds TensorFlow for clu's
own writer and for TFRecord-prepared TFDS datasets).

The writer has clu's ``MetricWriter`` interface (every method, same signatures) without
subclassing it: ``clu.metric_writers``'s package imports TensorFlow as it loads, so on the
light install it cannot be imported at all. Like clu's default writer it also logs each
scalar line.
"""

import json
from typing import Any, Mapping, Optional

import numpy as np
from absl import logging


class TensorboardXWriter:
  """Scalars, images, texts, histograms and hparams as TensorBoard events (tensorboardX),
  with clu's ``MetricWriter`` methods; scalars are logged too (as clu's LoggingWriter)."""

  def __init__(self, logdir: str, log: bool = True):
    from tensorboardX import SummaryWriter
    self._writer = SummaryWriter(logdir=logdir)
    self._log = log

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Optional[Mapping[str, Any]] = None):
    self.write_scalars(step, {k: v for k, v in values.items() if np.ndim(v) == 0})

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    if self._log:
      logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in scalars.items()))
    for key, value in scalars.items():
      self._writer.add_scalar(key, float(value), global_step=int(step))

  def write_images(self, step: int, images: Mapping[str, Any]):
    for key, value in images.items():
      self._writer.add_images(key, np.asarray(value), global_step=int(step), dataformats="NHWC")

  def write_videos(self, step: int, videos: Mapping[str, Any]):
    del step, videos  # Not produced by this project; TensorBoard videos need moviepy here.

  def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
    for key, value in audios.items():
      for i, clip in enumerate(np.asarray(value)):
        self._writer.add_audio(f"{key}/{i}", clip, global_step=int(step), sample_rate=sample_rate)

  def write_texts(self, step: int, texts: Mapping[str, str]):
    for key, value in texts.items():
      self._writer.add_text(key, value, global_step=int(step))

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Optional[Mapping[str, int]] = None):
    for key, value in arrays.items():
      self._writer.add_histogram(key, np.asarray(value), global_step=int(step))

  def write_hparams(self, hparams: Mapping[str, Any]):
    self._writer.add_text("hparams", json.dumps(dict(hparams), default=str, indent=1))

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()
