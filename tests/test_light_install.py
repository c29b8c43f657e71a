"""The light install (no TensorFlow): metrics still reach TensorBoard through tensorboardX."""

import builtins
import inspect
import os

import pytest

from stolen_jax import metrics, tb_writer


def test_without_tensorflow_metrics_go_to_tensorboard_through_tensorboardx(tmp_path, monkeypatch):
  pytest.importorskip("tensorboardX")
  real_import = builtins.__import__

  def no_tensorflow(name, *args, **kwargs):
    if name == "tensorflow" or name.startswith("tensorflow."):
      raise ImportError("No module named 'tensorflow'")
    return real_import(name, *args, **kwargs)
  monkeypatch.setattr(builtins, "__import__", no_tensorflow)
  writer = metrics.Writer(str(tmp_path))
  assert isinstance(writer._clu, tb_writer.TensorboardXWriter)
  writer.write_scalars(3, {"loss": 0.5})
  writer.write_hparams({"lr": 1e-3})
  writer.close()
  files = os.listdir(tmp_path)
  assert "metrics.jsonl" in files and any(f.startswith("events.out.tfevents") for f in files)
  from tensorboard.backend.event_processing import event_accumulator  # Read back as TB does.
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert [e.value for e in acc.Scalars("loss")] == [0.5]


def test_the_tensorboardx_writer_has_clus_metric_writer_interface():
  from clu.metric_writers import interface
  for name, method in inspect.getmembers(interface.MetricWriter):
    if getattr(method, "__isabstractmethod__", False):
      ours = getattr(tb_writer.TensorboardXWriter, name)
      assert list(inspect.signature(ours).parameters) == list(inspect.signature(method).parameters), name
