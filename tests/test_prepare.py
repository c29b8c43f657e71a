"""job=prepare: each official distribution format, made small and synthetic in its exact
layout here, converts to the .npz the sources read, images and labels intact."""

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from stolen_jax import defaults, jobs
from stolen_jax.data import prepare, sources
from stolen_jax.errors import DataError

RNG = np.random.default_rng(0)


def _images(n, size, channels=3):
  return RNG.integers(0, 255, (n, size, size, channels), dtype=np.uint8)


def _tar(path, files: dict, gz=True):
  with tarfile.open(path, "w:gz" if gz else "w") as tar:
    for name, data in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


def _check(out, x_train, y_train, x_test, y_test):
  with np.load(out) as f:
    np.testing.assert_array_equal(f["x_train"], x_train)
    np.testing.assert_array_equal(f["y_train"], y_train)
    np.testing.assert_array_equal(f["x_test"], x_test)
    np.testing.assert_array_equal(f["y_test"], y_test)
  loaded = sources.load(f"npz:{out}", "test", image_size=x_test.shape[1])
  assert len(loaded) == len(x_test)


def test_cifar10_python_tarball(tmp_path):
  x = _images(12, 32)
  y = RNG.integers(0, 10, 12)
  rows = lambda a: a.transpose(0, 3, 1, 2).reshape(len(a), -1)  # CIFAR stores CHW rows.
  batch = lambda a, b: pickle.dumps({b"data": rows(a), b"labels": [int(v) for v in b]})
  files = {f"cifar-10-batches-py/data_batch_{i + 1}": batch(x[2 * i:2 * i + 2], y[2 * i:2 * i + 2])
           for i in range(5)}
  files["cifar-10-batches-py/test_batch"] = batch(x[10:], y[10:])
  files["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": []})
  _tar(tmp_path / "cifar-10-python.tar.gz", files)
  out = tmp_path / "c.npz"
  prepare.convert("cifar10", str(tmp_path / "cifar-10-python.tar.gz"), str(out))
  _check(out, x[:10], y[:10], x[10:], y[10:])
  with np.load(out) as f:  # The classes' names are recorded (no pickle needed to read them).
    assert list(f["class_names"])[:3] == ["airplane", "automobile", "bird"]


def test_a_cifar_pickle_that_names_code_is_refused(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("touch PWNED",))
  files = {"cifar-10-batches-py/data_batch_1": pickle.dumps({b"data": Evil()}),
           "cifar-10-batches-py/test_batch": pickle.dumps({})}
  _tar(tmp_path / "c.tar.gz", files)
  with pytest.raises(DataError, match="refused"):
    prepare.convert("cifar10", str(tmp_path / "c.tar.gz"), str(tmp_path / "o.npz"))


def test_stl10_binary(tmp_path):
  x = _images(6, 96)
  y = RNG.integers(0, 10, 6)
  col_major = lambda a: a.transpose(0, 3, 2, 1).tobytes()  # Per channel, column-major.
  _tar(tmp_path / "stl10_binary.tar.gz", {
      "stl10_binary/train_X.bin": col_major(x[:4]), "stl10_binary/train_y.bin": (y[:4] + 1).astype(np.uint8).tobytes(),
      "stl10_binary/test_X.bin": col_major(x[4:]), "stl10_binary/test_y.bin": (y[4:] + 1).astype(np.uint8).tobytes()})
  out = tmp_path / "s.npz"
  prepare.convert("stl10", str(tmp_path / "stl10_binary.tar.gz"), str(out))
  _check(out, x[:4], y[:4], x[4:], y[4:])


def test_svhn_mat(tmp_path):
  from scipy.io import savemat
  x = _images(7, 32)
  y = np.array([10, 1, 2, 3, 10, 5, 6])  # SVHN writes digit 0 as 10.
  savemat(tmp_path / "train_32x32.mat", {"X": x[:5].transpose(1, 2, 3, 0), "y": y[:5, None]})
  savemat(tmp_path / "test_32x32.mat", {"X": x[5:].transpose(1, 2, 3, 0), "y": y[5:, None]})
  out = tmp_path / "v.npz"
  prepare.convert("svhn", str(tmp_path), str(out))
  _check(out, x[:5], np.where(y[:5] == 10, 0, y[:5]), x[5:], y[5:])


def _idx(path, array):
  header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx(tmp_path):
  x = _images(9, 28, 1)[..., 0]
  y = RNG.integers(0, 10, 9).astype(np.uint8)
  _idx(tmp_path / "train-images-idx3-ubyte.gz", x[:6])
  _idx(tmp_path / "train-labels-idx1-ubyte.gz", y[:6])
  _idx(tmp_path / "t10k-images-idx3-ubyte.gz", x[6:])
  _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y[6:])
  out = tmp_path / "m.npz"
  prepare.convert("fashion_mnist", str(tmp_path), str(out))
  _check(out, x[:6], y[:6], x[6:], y[6:])


def test_downsampled_imagenet_batches(tmp_path):
  x = _images(10, 32)
  y = RNG.integers(0, 1000, 10)
  rows = lambda a: a.transpose(0, 3, 1, 2).reshape(len(a), -1)
  for i, (lo, hi) in enumerate(((0, 3), (3, 7)), start=1):
    np.savez(tmp_path / f"train_data_batch_{i}.npz", data=rows(x[lo:hi]), labels=y[lo:hi] + 1,
             mean=np.zeros(3072))
  np.savez(tmp_path / "val_data.npz", data=rows(x[7:]), labels=y[7:] + 1)
  out = tmp_path / "i.npz"
  summary = prepare.convert("imagenet32", str(tmp_path), str(out), max_train=5, seed=3)
  with np.load(out) as f:
    assert f["x_train"].shape == (5, 32, 32, 3) and f["y_train"].max() < 1000
    idx = [int(np.flatnonzero((x[:7] == im).all(axis=(1, 2, 3)))[0]) for im in f["x_train"]]
    np.testing.assert_array_equal(f["y_train"], y[idx])
    np.testing.assert_array_equal(f["x_test"], x[7:])
  assert summary["x_train"] == [5, 32, 32, 3]


def test_gtsrb_zips(tmp_path):
  from PIL import Image
  from stolen_jax.data import gtsrb
  def ppm(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PPM")
    return buf.getvalue()
  x = _images(4, 32)
  with zipfile.ZipFile(tmp_path / gtsrb.TRAIN_ZIP, "w") as z:
    for c in (0, 1):
      folder = f"GTSRB/Final_Training/Images/{c:05d}"
      z.writestr(f"{folder}/GT-{c:05d}.csv", f"Filename;ClassId\n00000_00000.ppm;{c}\n")
      z.writestr(f"{folder}/00000_00000.ppm", ppm(x[c]))
  with zipfile.ZipFile(tmp_path / gtsrb.TEST_ZIP, "w") as z:
    for i in (2, 3):
      z.writestr(f"GTSRB/Final_Test/Images/0000{i}.ppm", ppm(x[i]))
  with zipfile.ZipFile(tmp_path / gtsrb.TEST_GT_ZIP, "w") as z:
    z.writestr("GT-final_test.csv", "Filename;ClassId\n00002.ppm;7\n00003.ppm;9\n")
  out = tmp_path / "g.npz"
  prepare.convert("gtsrb", str(tmp_path), str(out))
  with np.load(out) as f:
    assert f["y_train"].tolist() == [0, 1] and sorted(f["y_test"].tolist()) == [7, 9]
    assert f["x_train"].shape == (2, 32, 32, 3)


def test_image_folder_and_the_job(tmp_path):
  from PIL import Image
  for split, n in (("train", 2), ("test", 1)):
    for c in ("cat", "dog"):
      (tmp_path / "tree" / split / c).mkdir(parents=True)
      for i in range(n):
        Image.fromarray(_images(1, 8)[0]).save(tmp_path / "tree" / split / c / f"{i}.png")
  config = defaults.base_config("prepare")
  config.prepare = defaults.prepare_block()
  config.prepare.format, config.prepare.source = "image_folder", str(tmp_path / "tree")
  config.prepare.output = str(tmp_path / "f.npz")
  summary = jobs.run(config, str(tmp_path / "w"))
  assert summary["x_train"] == [4, 8, 8, 3] and summary["classes"] == 2
  assert summary["class_names"] == ["cat", "dog"]


def test_a_missing_source_or_unknown_format_is_one_error(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    prepare.convert("cifar10", str(tmp_path / "nope.tar.gz"), str(tmp_path / "o.npz"))
  with pytest.raises(Exception, match="valid choices"):
    prepare.convert("cifar11", str(tmp_path), str(tmp_path / "o.npz"))


def test_a_file_of_another_format_is_one_error_naming_it(tmp_path):
  (tmp_path / "notes.txt").write_text("not a tarball")
  with pytest.raises(DataError, match="cannot read .*notes.txt.* as cifar10"):
    prepare.convert("cifar10", str(tmp_path / "notes.txt"), str(tmp_path / "o.npz"))
  with pytest.raises(DataError, match="cannot read .* as stl10"):
    prepare.convert("stl10", str(tmp_path / "notes.txt"), str(tmp_path / "o.npz"))
  assert not (tmp_path / "o.npz").exists()
