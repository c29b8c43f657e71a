import os

import numpy as np
import pytest
from PIL import Image

from stolen_jax.data import embedded, sources
from stolen_jax.errors import ConfigError, DataError


def test_embedded_is_deterministic_and_split_disjoint():
  a = sources.load("embedded:shapes", "train[:64]")
  b = sources.load("embedded:shapes", "train[:64]")
  np.testing.assert_array_equal(a.images, b.images)
  test = sources.load("embedded:shapes", "test[:64]")
  assert not np.array_equal(a.images, test.images)
  assert a.images.shape == (64, 32, 32, 3) and a.images.dtype == np.uint8 and a.num_classes == 10
  # Every class appears and images are not blank.
  full = sources.load("embedded:shapes", "test")
  assert set(np.unique(full.labels)) == set(range(10))
  assert full.images.std() > 30


def test_glyphs_are_grey_repeated_to_rgb_and_resized():
  s = sources.load("embedded:glyphs", "train[:10%]", image_size=24, num_examples=0.5, seed=3)
  assert s.images.shape == (250, 24, 24, 3)
  np.testing.assert_array_equal(s.images[..., 0], s.images[..., 2])
  assert sources.load("embedded:glyphs", "train[:10%]", image_size=24, num_examples=0.5,
                      seed=3).labels.tolist() == s.labels.tolist()


def test_subsets_by_count_and_fraction():
  idx = sources.subset_indices(100, 10, seed=0)
  assert len(idx) == 10 and len(set(idx)) == 10 and np.all(np.diff(idx) > 0)
  assert len(sources.subset_indices(100, 0.05, seed=0)) == 5
  assert not np.array_equal(idx, sources.subset_indices(100, 10, seed=1))
  with pytest.raises(ConfigError):
    sources.subset_indices(100, 101, seed=0)
  with pytest.raises(ConfigError):
    sources.subset_indices(100, -1, seed=0)


def test_npz_source_and_slicing(tmp_path):
  x = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
  y = np.arange(20) % 4
  path = tmp_path / "d.npz"
  np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
  s = sources.load(f"npz:{path}", "train[5:15]", image_size=32)
  assert s.images.shape == (10, 32, 32, 3) and s.labels.tolist() == y[5:15].tolist()
  assert s.num_classes == 4
  assert len(sources.load(f"npz:{path}", "train[:50%]", image_size=28)) == 10
  with pytest.raises(DataError, match="x_valid"):
    sources.load(f"npz:{path}", "valid")
  with pytest.raises(DataError, match="does not exist"):
    sources.load(f"npz:{tmp_path}/missing.npz", "train")


def test_folder_sources(tmp_path):
  rng = np.random.default_rng(0)
  for cls in ("cat", "dog"):
    os.makedirs(tmp_path / "labeled" / cls)
    for i in range(3):
      Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
          tmp_path / "labeled" / cls / f"{i}.png")
  os.makedirs(tmp_path / "flat")
  for i in range(4):
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "flat" / f"{i}.jpg")
  labeled = sources.load(f"folder:{tmp_path}/labeled", "train", image_size=32)
  assert labeled.images.shape == (6, 32, 32, 3) and labeled.labels.tolist() == [0, 0, 0, 1, 1, 1]
  assert labeled.num_classes == 2
  flat = sources.load(f"folder:{tmp_path}/flat", "train", image_size=32)
  assert flat.images.shape == (4, 32, 32, 3) and flat.labels is None


def test_tfds_source_with_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    s = sources.load("tfds:mnist", "train", image_size=32, num_examples=8)
  assert s.images.shape == (8, 32, 32, 3) and s.labels.shape == (8,) and s.num_classes == 10


def test_tfds_missing_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(DataError, match="--config.prepare.format=mnist .*npz:data/mnist.npz"):
    sources.load("tfds:mnist", "train", data_dir=str(tmp_path), download=False)
  with pytest.raises(DataError, match="no dataset"):
    sources.load("tfds:not_a_dataset_name", "train")


@pytest.mark.parametrize("spec", ["cifar10", "hf:cifar10", "npz:", "embedded:nope"])
def test_bad_specs(spec):
  with pytest.raises(ConfigError):
    sources.load(spec, "train")


def test_embedded_generators_cover_registry():
  assert set(embedded.GENERATORS) == {"shapes", "textures", "glyphs", "scenes"}


def test_embedded_images_do_not_change_when_generators_are_added():
  # Stage keys hold images' fingerprints; a generator added to the registry must not
  # reseed the others (it once did, through their sorted position).
  for name, base in (("glyphs", 1000), ("shapes", 2000), ("textures", 3000)):
    make, _ = embedded.GENERATORS[name]
    x, _, _ = embedded.load(name, "test")
    np.testing.assert_array_equal(x, make(embedded.SPLIT_SIZES["test"], base + 1)[0])


def test_tfds_array_record_datasets_are_read_without_tensorflow(monkeypatch):
  import tensorflow_datasets as tfds
  from stolen_jax.data import tfds_reader
  monkeypatch.setattr(tfds_reader, "_is_array_record", lambda builder: True)
  monkeypatch.setattr(tfds_reader, "tensorflow_available", lambda: False)
  with tfds.testing.mock_data(num_examples=6):  # Mocks tfds.data_source too.
    s = sources.load("tfds:mnist", "train", image_size=32)
  assert s.images.shape == (6, 32, 32, 3) and s.labels.shape == (6,) and s.num_classes == 10


def test_tfds_without_tensorflow_says_the_three_ways_on(monkeypatch, tmp_path):
  from stolen_jax.data import tfds_reader
  monkeypatch.setattr(tfds_reader, "tensorflow_available", lambda: False)
  with pytest.raises(DataError, match=r"stolen_jax\[tf\].*array_record.*prepare.format=mnist"):
    sources.load("tfds:mnist", "train", data_dir=str(tmp_path), download=False)
