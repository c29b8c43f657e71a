"""A clu ``MetricWriter`` that writes TensorBoard event files through tensorboardX, so metrics
reach TensorBoard on an install without TensorFlow (``pip install stolen_jax`` is light;
``[tf]`` adds TensorFlow for clu's own writer and for TFRecord-prepared TFDS datasets)."""

import json
from typing import Any, Mapping, Optional

import numpy as np
from clu.metric_writers import interface


class TensorboardXWriter(interface.MetricWriter):
  """Scalars, images, texts, histograms and hparams as TensorBoard events (tensorboardX)."""

  def __init__(self, logdir: str):
    from tensorboardX import SummaryWriter
    self._writer = SummaryWriter(logdir=logdir)

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Optional[Mapping[str, Any]] = None):
    self.write_scalars(step, {k: v for k, v in values.items() if np.ndim(v) == 0})

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
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
