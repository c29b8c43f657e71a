"""The GTSRB builder on a tiny archive laid out like the official one."""

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from stolen_jax.data import sources


def _ppm(color, size=(35, 41)):
  buf = io.BytesIO()
  Image.new("RGB", size, color).save(buf, format="PPM")
  return buf.getvalue()


def make_fake_archives(manual_dir):
  os.makedirs(manual_dir)
  header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
  with zipfile.ZipFile(os.path.join(manual_dir, "GTSRB_Final_Training_Images.zip"), "w") as z:
    for cls in (0, 2, 42):
      folder = f"GTSRB/Final_Training/Images/{cls:05d}"
      rows = []
      for i in range(2):
        name = f"00000_{i:05d}.ppm"
        z.writestr(f"{folder}/{name}", _ppm((cls * 6, 100, 200)))
        rows.append(f"{name};35;41;5;5;30;36;{cls}\n")
      z.writestr(f"{folder}/GT-{cls:05d}.csv", header + "".join(rows))
  with zipfile.ZipFile(os.path.join(manual_dir, "GTSRB_Final_Test_Images.zip"), "w") as z:
    for i in range(4):
      z.writestr(f"GTSRB/Final_Test/Images/{i:05d}.ppm", _ppm((i * 50, 0, 0)))
    z.writestr("GTSRB/Final_Test/Images/GT-final_test.test.csv", "Filename;Width;Height\n")
  with zipfile.ZipFile(os.path.join(manual_dir, "GTSRB_Final_Test_GT.zip"), "w") as z:
    z.writestr("GT-final_test.csv", header + "".join(
        f"{i:05d}.ppm;35;41;5;5;30;36;{[1, 5, 42, 0][i]}\n" for i in range(4)))


def test_gtsrb_builder_reads_official_layout(tmp_path):
  data_dir = str(tmp_path / "tfds")
  make_fake_archives(os.path.join(data_dir, "downloads", "manual"))
  train = sources.load("tfds:gtsrb", "train", data_dir=data_dir)
  test = sources.load("tfds:gtsrb", "test", data_dir=data_dir)
  assert train.images.shape == (6, 32, 32, 3) and test.images.shape == (4, 32, 32, 3)
  assert sorted(train.labels.tolist()) == [0, 0, 2, 2, 42, 42]
  assert train.num_classes == 43
  order = np.argsort(test.images[:, 0, 0, 0])
  assert test.labels[order].tolist() == [1, 5, 42, 0]


def test_gtsrb_without_archives_says_where_to_put_them(tmp_path):
  from stolen_jax.errors import DataError
  with pytest.raises(DataError, match="manual"):
    sources.load("tfds:gtsrb", "train", data_dir=str(tmp_path))
