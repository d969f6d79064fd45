"""Fashion-MNIST from the IDX files of Debian's ``dataset-fashion-mnist`` (or a folder you name).

Nothing is downloaded: the files are read from ``root=``, ``$HYPERNAS_FASHION_MNIST_DIR`` or the
Debian path, checked (gzip, IDX magic, sizes), decoded once per process and normalised with the
training pixels' mean and standard deviation.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .contract import InputContract
from .dataset import DataError, Dataset, DatasetNotFoundError, Split, arrays_to_split, check_room
from .splits import hold_out

__all__ = ["check_fashion_mnist", "load_fashion_mnist"]

_FASHION_ENV = "HYPERNAS_FASHION_MNIST_DIR"
_FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = (  # train images, train labels, test images, test labels
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FASHION_MEAN, _FASHION_STD = 0.2860, 0.3530  # of the training pixels, after scaling to [0, 1]
LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag", "Ankle boot")
CONTRACT = InputContract(raw_shape=(1, 28, 28), scale=1 / 255, mean=(_FASHION_MEAN,),
                         std=(_FASHION_STD,), raw_range=(0.0, 255.0), labels=LABELS)
_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # IDX magic numbers: unsigned bytes in 3 dims / 1 dim
_FASHION_INSTALL = (
    "install them with `apt-get install dataset-fashion-mnist`, or point "
    f"{_FASHION_ENV} (or root=...) at a folder holding {', '.join(_FASHION_FILES)}"
)


def _fashion_dir(root: str | None) -> tuple[Path, str]:
    """The folder to read and where that choice came from."""
    if root is not None:
        return Path(root).expanduser(), "set by root="
    if os.environ.get(_FASHION_ENV):
        return Path(os.environ[_FASHION_ENV]).expanduser(), f"set by ${_FASHION_ENV}"
    return Path(_FASHION_DEBIAN_DIR), "the default location"


def _fashion_missing(directory: Path) -> list[str]:
    return [name for name in _FASHION_FILES if not (directory / name).is_file()]


def load_fashion_mnist(*, seed: int, val_size: int | None, root: str | None) -> Dataset:
    directory, source = _fashion_dir(root)
    missing = _fashion_missing(directory)
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files not found in {directory} ({source}; missing "
            f"{', '.join(missing)}): {_FASHION_INSTALL}"
        )
    train_x, train_y, test_x, test_y = _read_fashion_mnist(str(directory.resolve()))
    n_val = 5000 if val_size is None else val_size
    check_room("fashion-mnist", n_val, len(train_y))
    train, val = hold_out(train_y, n_val, seed)
    return Dataset(
        name="fashion-mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        train=_fashion_split(train_x[train], train_y[train]),
        val=_fashion_split(train_x[val], train_y[val]),
        test=_fashion_split(test_x, test_y),
        contract=CONTRACT,
    )


def _fashion_split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = images.astype(np.float32)  # (n, 28, 28), 0..255
    x *= 1.0 / (255.0 * _FASHION_STD)  # (x/255 - mean)/std in two in-place passes
    x -= _FASHION_MEAN / _FASHION_STD
    return arrays_to_split(x[:, None], labels)  # (n, 1, 28, 28)


@functools.lru_cache(maxsize=4)
def _read_fashion_mnist(directory: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded (train images, train labels, test images, test labels), read-only uint8."""
    folder = Path(directory)
    train_x, train_y, test_x, test_y = (
        _read_idx(folder / name, magic, shape)
        for name, magic, shape in zip(
            _FASHION_FILES, (_IDX_IMAGES, _IDX_LABELS) * 2, ((28, 28), ()) * 2, strict=True
        )
    )
    for images, labels, name in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(images) != len(labels) or labels.max(initial=0) > 9:
            raise DataError(
                f"{folder}: {name} images and labels do not match ({len(images)} images, "
                f"{len(labels)} labels, largest label {labels.max(initial=0)}); replace the files "
                "with a good copy (Debian: `apt-get install --reinstall dataset-fashion-mnist`)"
            )
    return train_x, train_y, test_x, test_y


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Read a gzipped IDX file of bytes: big-endian magic, one uint32 per dim, then the data."""
    fix = (
        "replace it with a good copy (Debian: `apt-get install --reinstall dataset-fashion-mnist`)"
    )
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}); {fix}") from err
    ndim = len(item_shape) + 1
    header = 4 * (ndim + 1)
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: {len(raw)} bytes, shorter than its {header}-byte IDX header; "
            f"{fix}"
        )
    found, *dims = struct.unpack(f">{ndim + 1}I", raw[:header])
    if found != magic or tuple(dims[1:]) != item_shape:
        raise DataError(
            f"{path} has IDX magic {found} and dims {dims}, expected magic {magic} and items of "
            f"shape {item_shape}: it is not the file its name says; {fix}"
        )
    if len(raw) - header != math.prod(dims):
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes but its header promises "
            f"{math.prod(dims)}: the file is truncated or corrupt; {fix}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def check_fashion_mnist() -> tuple[bool, str]:
    directory, source = _fashion_dir(None)
    if _fashion_missing(directory):
        return False, f"files not found in {directory} ({source}): {_FASHION_INSTALL}"
    return True, ""
