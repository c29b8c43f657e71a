"""``job='prepare'``: a dataset's official distribution -> the ``.npz`` every run reads.

  python -m stolen_jax.main --config=configs/prepare.py \\
      --config.prepare.format=cifar10 --config.prepare.source=cifar-10-python.tar.gz \\
      --config.prepare.output=data/cifar10.npz
  ... then --config.steal.surrogate=npz:data/cifar10.npz (or any dataset key) in any config.

Formats (``FORMATS``), each read from the file its publisher distributes, never downloaded:
CIFAR-10/100 (the python tarball), STL10 (the binary tarball or its extracted folder), SVHN
(``train_32x32.mat`` and ``test_32x32.mat`` in one folder), GTSRB (the three "final" zips in
one folder), MNIST and Fashion-MNIST (the four idx files, gzipped or not, in one folder), the
downsampled ImageNet (its ``train_data_batch_*.npz`` and ``val_data.npz`` in one folder, any
of 32/64 px), and any image-folder tree (``DIR/<train|test>/<class>/*.png|jpg``). The output
holds uint8 ``x_train, y_train, x_test, y_test`` (NHWC, labels from 0), written atomically;
``max_train``/``max_test`` keep a seeded random subset (ImageNet-32 is 1.28M images).
The pickles of CIFAR and of the ImageNet batches are read with a restricted unpickler that
only rebuilds numpy arrays.
"""

import glob
import gzip
import io
import os
import pickle
import struct
import tarfile
from typing import Callable, Optional

import numpy as np

from stolen_jax.errors import ConfigError, DataError


class _NumpyOnly(pickle.Unpickler):
  """Rebuilds dicts of numpy arrays (what CIFAR's batches hold) and nothing else."""
  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
             ("numpy._core.multiarray", "scalar")}

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED:
      return super().find_class(module, name)
    raise DataError(f"the archive's pickle names {module}.{name}; refused (a CIFAR batch only "
                    "holds numpy arrays)")


def _unpickle(data: bytes) -> dict:
  obj = _NumpyOnly(io.BytesIO(data), encoding="bytes").load()
  return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _chw_rows(rows: np.ndarray, size: int) -> np.ndarray:
  """(N, 3*size*size) channel-major rows -> (N, size, size, 3)."""
  return np.asarray(rows, np.uint8).reshape(-1, 3, size, size).transpose(0, 2, 3, 1)


def cifar(source: str, label_key: str = "labels"):
  """The CIFAR-10 (or, with 'fine_labels', CIFAR-100) python tarball."""
  with tarfile.open(source) as tar:
    members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
    train_names = sorted(n for n in members if n.startswith("data_batch")) or ["train"]
    test_name = "test_batch" if "test_batch" in members else "test"

    def read(names):
      batches = [_unpickle(tar.extractfile(members[n]).read()) for n in names]
      return (np.concatenate([_chw_rows(b["data"], 32) for b in batches]),
              np.concatenate([np.asarray(b[label_key]) for b in batches]))
    missing = [n for n in train_names + [test_name] if n not in members]
    if missing:
      raise DataError(f"{source} lacks {missing}: not the CIFAR python tarball")
    return read(train_names), read([test_name])


def stl10(source: str):
  """STL10's binary release (stl10_binary.tar.gz or its folder): 96-px images stored
  column-major per channel; labels 1..10 -> 0..9. The 100k unlabeled images are left out."""
  def open_member(name):
    if os.path.isdir(source):
      path = next(iter(glob.glob(os.path.join(source, "**", name), recursive=True)), None)
      if path is None:
        raise DataError(f"{source} has no {name}")
      return open(path, "rb").read()
    with tarfile.open(source) as tar:
      member = next((m for m in tar.getmembers() if m.name.endswith("/" + name) or m.name == name), None)
      if member is None:
        raise DataError(f"{source} has no {name}")
      return tar.extractfile(member).read()

  def split(name):
    x = np.frombuffer(open_member(f"{name}_X.bin"), np.uint8).reshape(-1, 3, 96, 96)
    y = np.frombuffer(open_member(f"{name}_y.bin"), np.uint8).astype(np.int64) - 1
    return x.transpose(0, 3, 2, 1), y
  return split("train"), split("test")


def svhn(source: str):
  """SVHN's cropped digits: train_32x32.mat and test_32x32.mat (X: 32x32x3xN; label 10 is 0)."""
  from scipy.io import loadmat

  def split(name):
    path = os.path.join(source, f"{name}_32x32.mat")
    if not os.path.isfile(path):
      raise DataError(f"{source} has no {name}_32x32.mat")
    mat = loadmat(path)
    y = mat["y"].reshape(-1).astype(np.int64)
    return np.transpose(mat["X"], (3, 0, 1, 2)), np.where(y == 10, 0, y)
  return split("train"), split("test")


def gtsrb(source: str):
  """GTSRB's three "final" zips in one folder, images resized to 32x32 (``data.gtsrb``)."""
  from stolen_jax.data import gtsrb as g
  paths = [os.path.join(source, n) for n in (g.TRAIN_ZIP, g.TEST_ZIP, g.TEST_GT_ZIP)]
  missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
  if missing:
    raise DataError(f"{source} lacks {missing} (GTSRB's final release zips)")

  def stack(examples):
    ex = [e for _, e in examples]
    return np.stack([e["image"] for e in ex]), np.asarray([e["label"] for e in ex])
  return stack(g.train_examples(paths[0])), stack(g.test_examples(paths[1], paths[2]))


def _idx(path: str) -> np.ndarray:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  magic, = struct.unpack(">I", data[:4])
  if magic >> 8 != 8:  # 0x08: unsigned bytes
    raise DataError(f"{path} is not an idx file of unsigned bytes (magic {magic:#x})")
  ndim = magic & 0xFF
  dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  return np.frombuffer(data[4 + 4 * ndim:], np.uint8).reshape(dims)


def mnist(source: str):
  """MNIST or Fashion-MNIST: the four idx files (gzipped or not) in one folder."""
  def find(prefix):
    for ext in ("", ".gz"):
      for sep in ("-", "."):
        path = os.path.join(source, prefix.replace("-", sep) + ext)
        if os.path.isfile(path):
          return path
    raise DataError(f"{source} has no {prefix}[.gz]")
  return ((_idx(find("train-images-idx3-ubyte")), _idx(find("train-labels-idx1-ubyte"))),
          (_idx(find("t10k-images-idx3-ubyte")), _idx(find("t10k-labels-idx1-ubyte"))))


def imagenet_downsampled(source: str):
  """The downsampled ImageNet (32 or 64 px): train_data_batch_*.npz and val_data.npz (or
  their pickled forms), rows channel-major, labels 1..1000 -> 0..999."""
  def load(path):
    if path.endswith(".npz"):
      with np.load(path, allow_pickle=False) as f:
        return np.asarray(f["data"]), np.asarray(f["labels"])
    with open(path, "rb") as f:
      b = _unpickle(f.read())
    return np.asarray(b["data"]), np.asarray(b["labels"])

  def split(paths):
    if not paths:
      raise DataError(f"{source} has no train_data_batch_* / val_data files")
    parts = [load(p) for p in paths]
    rows = np.concatenate([p[0] for p in parts])
    size = int(round((rows.shape[1] / 3) ** 0.5))
    return _chw_rows(rows, size), np.concatenate([p[1] for p in parts]).astype(np.int64) - 1
  train = sorted(glob.glob(os.path.join(source, "train_data_batch_*")),
                 key=lambda p: int("".join(c for c in os.path.basename(p) if c.isdigit()) or 0))
  return split(train), split(sorted(glob.glob(os.path.join(source, "val_data*"))))


def image_folder(source: str):
  """DIR/train/<class>/*.(png|jpg) and DIR/test/<class>/... (classes sorted by name)."""
  from stolen_jax.data import sources
  out = []
  for split in ("train", "test"):
    if not os.path.isdir(os.path.join(source, split)):
      raise DataError(f"{source} has no {split}/ folder (DIR/train/<class>/*.png, DIR/test/...)")
    images, labels, _ = sources._load_folder(source, split)
    out.append((images, labels))
  return tuple(out)


FORMATS: dict[str, Callable] = {
    "cifar10": cifar, "cifar100": lambda s: cifar(s, "fine_labels"), "stl10": stl10,
    "svhn": svhn, "gtsrb": gtsrb, "mnist": mnist, "fashion_mnist": mnist,
    "imagenet32": imagenet_downsampled, "imagenet64": imagenet_downsampled,
    "image_folder": image_folder,
}


# The classes' names, by label, where the format fixes them (the .npz records them as
# ``class_names``); CIFAR-100's come from its archive, image folders' from the folders.
_DIGITS = tuple(str(i) for i in range(10))
CLASS_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "stl10": ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
    "mnist": _DIGITS, "svhn": _DIGITS,
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


def class_names(fmt: str, source: str) -> Optional[tuple]:
  """The names of ``fmt``'s classes by label, or None where the files do not say them."""
  if fmt in CLASS_NAMES:
    return CLASS_NAMES[fmt]
  if fmt == "image_folder":
    return tuple(sorted(d for d in os.listdir(os.path.join(source, "train"))
                        if os.path.isdir(os.path.join(source, "train", d))))
  if fmt == "cifar100":
    with tarfile.open(source) as t:
      meta = next((m for m in t.getmembers() if m.name.endswith("/meta")), None)
      if meta is not None:
        names = _unpickle(t.extractfile(meta).read()).get(b"fine_label_names")
        if names:
          return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
  return None


def _subset(x, y, limit: Optional[int], seed: int):
  if limit is None or limit >= len(x):
    return x, y
  idx = np.sort(np.random.default_rng(seed).choice(len(x), int(limit), replace=False))
  return x[idx], y[idx]


def convert(fmt: str, source: str, output: str, max_train: Optional[int] = None,
            max_test: Optional[int] = None, seed: int = 0, image_size: Optional[int] = None) -> dict:
  """Reads ``source`` as ``fmt`` and writes ``output`` (.npz); returns what it wrote."""
  from stolen_jax.data import sources
  if fmt not in FORMATS:
    raise ConfigError(f"unknown dataset format {fmt!r}; valid choices: {', '.join(sorted(FORMATS))}")
  source = os.path.expanduser(source or "")
  if not os.path.exists(source):
    raise DataError(f"prepare.source={source!r} does not exist (the {fmt} file or folder as "
                    "its publisher distributes it)")
  try:
    (x_train, y_train), (x_test, y_test) = FORMATS[fmt](source)
  except (DataError, ConfigError):
    raise
  except Exception as e:  # noqa: BLE001  (a file of another format, truncated, unreadable)
    raise DataError(f"cannot read {source!r} as {fmt} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0][:160] if str(e) else 'unreadable'}); give the "
                    f"file or folder its publisher distributes (README \"Data\")") from None
  x_train, y_train = _subset(x_train, y_train, max_train, seed)
  x_test, y_test = _subset(x_test, y_test, max_test, seed + 1)
  arrays = {}
  for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    x = np.asarray(x, np.uint8)  # Grey stays grey (sources repeat it to RGB when read).
    if image_size:
      x = sources.resize_images(sources.to_rgb(x), int(image_size))
    arrays[f"x_{name}"] = np.ascontiguousarray(x)
    arrays[f"y_{name}"] = sources.check_labels(y, len(x), f"{fmt}:{name}").astype(np.int64)
  names = class_names(fmt, source)
  if names is not None:
    arrays["class_names"] = np.asarray(names, dtype=str)
  output = os.path.expanduser(output)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  tmp = output + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, output)
  return {"output": os.path.abspath(output), "format": fmt,
          **{k: list(v.shape) for k, v in arrays.items() if k.startswith("x_")},
          "classes": int(max(arrays["y_train"].max(), arrays["y_test"].max()) + 1),
          "class_names": list(names) if names is not None else None}


def run(config, workdir: str) -> dict:
  """``job='prepare'``: converts ``prepare.source`` (``prepare.format``) to ``prepare.output``."""
  cfg = config.prepare
  if not cfg.output:
    raise ConfigError("prepare.output is required: the .npz file to write, e.g. data/cifar10.npz")
  summary = convert(cfg.format, cfg.source, cfg.output, cfg.max_train, cfg.max_test, cfg.seed,
                    cfg.image_size)
  print(f"wrote {summary['output']}: train {summary['x_train']}, test {summary['x_test']}, "
        f"{summary['classes']} classes; use it as npz:{cfg.output}")
  return summary
