"""What to tell a user whose dataset is missing: the command that makes it here. (No imports
from the rest of the package: the readers and the preflight both use it.)"""


# TFDS names -> job=prepare formats (README "Data": where each official file is published).
PREPARE_FORMATS = {"cifar10": "cifar10", "cifar100": "cifar100", "mnist": "mnist",
                   "fashion_mnist": "fashion_mnist", "svhn_cropped": "svhn", "stl10": "stl10",
                   "gtsrb": "gtsrb", "imagenet_resized/32x32": "imagenet32",
                   "imagenet_resized/64x64": "imagenet64", "downsampled_imagenet/32x32": "imagenet32"}


def prepare_hint(name: str) -> str:
  """How to make the dataset ``name`` from its official file, as a command that works here."""
  fmt = PREPARE_FORMATS.get(name.split(":")[0])
  if fmt is None:
    return (f"prepare it where TFDS can download it (tfds.builder('{name}', data_dir=DIR)"
            ".download_and_prepare()) and pass its data_dir, or use an npz:/folder: dataset")
  slug = fmt
  return (f"make it from its official file: python -m stolen_jax.main --config=configs/prepare.py "
          f"--config.prepare.format={fmt} --config.prepare.source=FILE_OR_DIR "
          f"--config.prepare.output=data/{slug}.npz, then name npz:data/{slug}.npz instead of "
          f"tfds:{name} (README \"Data\": where the file is published)")


def needs_tensorflow(name: str, data_dir_root) -> str:
  """Why a TFDS dataset cannot be read on this install, and the three ways on."""
  return (f"TFDS dataset {name!r} is not prepared as ArrayRecord in data_dir={str(data_dir_root)!r}, "
          f"and reading TFRecord or downloading needs TensorFlow: pip install 'stolen_jax[tf]', "
          f"or prepare it with `tfds build {name} --file_format=array_record`, or "
          f"{prepare_hint(name)}")
