"""GTSRB (German Traffic Sign Recognition Benchmark) as a TFDS dataset, ``tfds:gtsrb``.

GTSRB is not in the TFDS catalog and its archives are distributed by the benchmark's site,
so this builder reads the official archives from TFDS's manual-download folder. Steps:

1. Download the three official archives of the GTSRB "final" release:
   ``GTSRB_Final_Training_Images.zip``, ``GTSRB_Final_Test_Images.zip`` and
   ``GTSRB_Final_Test_GT.zip`` (from the benchmark's site, benchmark.ini.rub.de).
2. Put them, unopened, in ``DIR/downloads/manual/`` (DIR is your TFDS data_dir, by default
   ``~/tensorflow_datasets``).
3. Build once: ``python -c "import stolen_jax.data.gtsrb as g, tensorflow_datasets as tfds;
   tfds.builder('gtsrb', data_dir='DIR').download_and_prepare()"``.
   After that ``tfds:gtsrb`` works in any config (39,209 train / 12,630 test images, 43 classes).

Images are cropped to nothing (as the paper, whole images) and resized to 32x32 here.
"""

import csv
import io
import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds

TRAIN_ZIP = "GTSRB_Final_Training_Images.zip"
TEST_ZIP = "GTSRB_Final_Test_Images.zip"
TEST_GT_ZIP = "GTSRB_Final_Test_GT.zip"
NUM_CLASSES = 43
SIZE = 32


def _read_image(data: bytes) -> np.ndarray:
  from PIL import Image
  image = Image.open(io.BytesIO(data)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
  return np.asarray(image, np.uint8)


def _rows(zf: zipfile.ZipFile, name: str):
  with zf.open(name) as f:
    yield from csv.DictReader(io.TextIOWrapper(f, "utf-8"), delimiter=";")


def train_examples(path: str):
  """(key, example) pairs from the training archive: GTSRB/Final_Training/Images/000CC/
  with a GT-000CC.csv per class."""
  with zipfile.ZipFile(path) as zf:
    for name in sorted(n for n in zf.namelist() if n.endswith(".csv") and "/GT-" in n):
      folder = os.path.dirname(name)
      for row in _rows(zf, name):
        member = f"{folder}/{row['Filename']}"
        yield member, {"image": _read_image(zf.read(member)), "label": int(row["ClassId"])}


def test_examples(images_path: str, gt_path: str):
  """(key, example) pairs of the test archive, labels from GT-final_test.csv."""
  with zipfile.ZipFile(gt_path) as gz:
    csv_name = next(n for n in gz.namelist() if n.endswith(".csv"))
    labels = {row["Filename"]: int(row["ClassId"]) for row in _rows(gz, csv_name)}
  with zipfile.ZipFile(images_path) as zf:
    for member in sorted(n for n in zf.namelist() if n.endswith(".ppm")):
      yield member, {"image": _read_image(zf.read(member)), "label": labels[os.path.basename(member)]}


class Gtsrb(tfds.core.GeneratorBasedBuilder):
  """GTSRB at 32x32 from the official archives (manual download)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Official final release, resized to 32x32."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Place {TRAIN_ZIP}, {TEST_ZIP} and {TEST_GT_ZIP} (the official GTSRB archives) in "
      "the manual_dir (<data_dir>/downloads/manual). See stolen_jax/data/gtsrb.py.")

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://benchmark.ini.rub.de/gtsrb_news.html")

  def _split_generators(self, dl_manager):
    manual = dl_manager.manual_dir
    paths = {n: os.path.join(manual, n) for n in (TRAIN_ZIP, TEST_ZIP, TEST_GT_ZIP)}
    missing = [n for n, p in paths.items() if not os.path.exists(p)]
    if missing:
      raise AssertionError(f"GTSRB archives missing from {manual}: {', '.join(missing)}. "
                           + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {"train": self._generate_examples(train_examples(paths[TRAIN_ZIP])),
            "test": self._generate_examples(test_examples(paths[TEST_ZIP], paths[TEST_GT_ZIP]))}

  def _generate_examples(self, examples):
    yield from examples
