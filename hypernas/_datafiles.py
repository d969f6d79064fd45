"""Where each dataset's data comes from: file readers, per-dataset loaders and the registry.

Private: reached through :mod:`hypernas.data`, whose ``load_dataset`` and ``list_datasets``
read ``_REGISTRY``. Readers check what they read (gzipped IDX, ``.npz``) and return numpy
arrays; loaders split them and build a :class:`~hypernas.data.Dataset`. This module imports
:mod:`hypernas.data`, which imports this one only inside those two functions: no import cycle.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import io
import math
import os
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypernas.data import (
    Dataset,
    DataError,
    DatasetNotFoundError,
    Split,
    _carve,
    _check_room,
    _hold_out,
    _split,
)


# ----------------------------------------------------------------------------- fashion-mnist

_FASHION_ENV = "HYPERNAS_FASHION_MNIST_DIR"
_FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = (  # train images, train labels, test images, test labels
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FASHION_MEAN, _FASHION_STD = 0.2860, 0.3530  # of the training pixels, after scaling to [0, 1]
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


def _load_fashion_mnist(*, seed: int, val_size: int | None, root: str | None) -> Dataset:
    directory, source = _fashion_dir(root)
    missing = _fashion_missing(directory)
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files not found in {directory} ({source}; missing "
            f"{', '.join(missing)}): {_FASHION_INSTALL}"
        )
    train_x, train_y, test_x, test_y = _read_fashion_mnist(str(directory.resolve()))
    n_val = 5000 if val_size is None else val_size
    _check_room("fashion-mnist", n_val, len(train_y))
    train, val = _hold_out(train_y, n_val, seed)
    return Dataset(
        name="fashion-mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        train=_fashion_split(train_x[train], train_y[train]),
        val=_fashion_split(train_x[val], train_y[val]),
        test=_fashion_split(test_x, test_y),
    )


def _fashion_split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = images.astype(np.float32)  # (n, 28, 28), 0..255
    x *= 1.0 / (255.0 * _FASHION_STD)  # (x/255 - mean)/std in two in-place passes
    x -= _FASHION_MEAN / _FASHION_STD
    return _split(x[:, None], labels)  # (n, 1, 28, 28)


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


def _check_fashion_mnist() -> tuple[bool, str]:
    directory, source = _fashion_dir(None)
    if _fashion_missing(directory):
        return False, f"files not found in {directory} ({source}): {_FASHION_INSTALL}"
    return True, ""


# ----------------------------------------------------------------------------- digits and mnist1d


def _load_digits(*, seed: int, val_size: int | None) -> Dataset:
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes seconds to import

    bunch = load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8) / 16.0  # (1797, 1, 8, 8), in [0, 1]
    y = bunch.target.astype(np.int64)
    n_test = round(0.2 * len(y))
    n_val = n_test if val_size is None else val_size
    _check_room("digits", n_val, len(y) - n_test)
    train, val, test = _carve(y, n_test, n_val, seed)
    mean, std = x[train].mean(), x[train].std()  # standardise with training statistics only
    x = (x - mean) / std
    parts = {
        name: _split(x[index], y[index])
        for name, index in (("train", train), ("val", val), ("test", test))
    }
    return Dataset(name="digits", input_shape=(1, 8, 8), num_classes=10, **parts)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D by the package's default recipe (its own seed 42): read-only x, y, x_test, y_test.

    ``make_dataset`` reseeds Python's and NumPy's global random generators; we put them back.
    """
    if importlib.util.find_spec("mnist1d") is None:
        raise DatasetNotFoundError(
            "dataset 'mnist1d' needs the mnist1d package: pip install mnist1d"
        )
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # keep the package quiet
            from mnist1d.data import get_dataset_args, make_dataset

            data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _load_mnist1d(*, seed: int, val_size: int | None) -> Dataset:
    x, y, x_test, y_test = _mnist1d_arrays()  # (4000, 40), (4000,), (1000, 40), (1000,)
    n_val = 1000 if val_size is None else val_size
    _check_room("mnist1d", n_val, len(y))
    train, val = _hold_out(y, n_val, seed)
    return Dataset(
        name="mnist1d",
        input_shape=(x.shape[1],),
        num_classes=10,
        train=_split(x[train], y[train]),
        val=_split(x[val], y[val]),
        test=_split(x_test, y_test),
    )


def _check_package(module: str, package: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        if importlib.util.find_spec(module) is None:
            return False, f"pip install {package}"
        return True, ""

    return check


# ----------------------------------------------------------------------------- npz

_NPZ_LAYOUTS = "x_train, y_train (plus optional x_val, y_val and x_test, y_test), or x, y"
_NPZ_SAVE = "save it with numpy.savez(path, x_train=..., y_train=...)"


def _load_npz(*, seed: int, val_size: int | None, path: str | None) -> Dataset:
    arrays = _read_npz(path)
    file = Path(str(path)).expanduser()
    parts = _npz_parts(arrays, file)  # split name -> (x key, y key), only the splits the file has
    for x_key, y_key in parts.values():
        _check_xy(arrays, x_key, y_key, file)
    x_key, y_key = parts["train"]
    shape = arrays[x_key].shape[1:]
    for other_x, _ in parts.values():
        if arrays[other_x].shape[1:] != shape:
            raise DataError(
                f"{file}: {other_x} items have shape {arrays[other_x].shape[1:]} but {x_key} "
                f"items have {shape}; every split must hold inputs of the same shape"
            )
    if "val" in parts and val_size is not None:
        raise DataError(
            f"{file} has its own validation split (x_val); drop val_size, or remove x_val/y_val"
        )
    x, y = arrays[x_key], arrays[y_key]
    n_test = 0 if "test" in parts else round(0.15 * len(y))
    n_val = round(0.15 * len(y)) if val_size is None else val_size
    if "val" in parts:
        n_val = 0
    _check_room("npz", n_val, len(y) - n_test)
    train, val, test = _carve(y, n_test, n_val, seed)
    splits = {
        "train": _split(x[train], y[train]),
        "val": _split(x[val], y[val]),
        "test": _split(x[test], y[test]),
    }
    for name in ("val", "test"):
        if name in parts:
            splits[name] = _split(arrays[parts[name][0]], arrays[parts[name][1]])
    num_classes = max(int(split.y.max()) + 1 for split in splits.values() if len(split))
    return Dataset(name="npz", input_shape=tuple(shape), num_classes=num_classes, **splits)


def _read_npz(path: str | None) -> dict[str, np.ndarray]:
    if path is None:
        raise DataError("dataset 'npz' needs path=: load_dataset('npz', path='my_data.npz')")
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetNotFoundError(
            f"npz file not found: {file}; pass path= pointing at an existing file ({_NPZ_SAVE})"
        )
    try:
        loaded = np.load(file, allow_pickle=False)  # never unpickle a user's file
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {key: loaded[key] for key in loaded.files}
    except ValueError as err:  # pickled data or object arrays, refused by allow_pickle=False
        raise DataError(
            f"{file}: {err}; hypernas only reads plain numeric arrays, {_NPZ_SAVE}"
        ) from err
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"could not read {file} as an .npz file ({err}); {_NPZ_SAVE}") from err
    raise DataError(
        f"{file} holds a single array, not an .npz archive of named arrays; {_NPZ_SAVE}"
    )


def _npz_parts(arrays: dict[str, np.ndarray], file: Path) -> dict[str, tuple[str, str]]:
    keys = set(arrays)
    if {"x_train", "y_train"} <= keys:
        accepted = {f"{xy}_{split}" for xy in "xy" for split in ("train", "val", "test")}
        parts = {split: (f"x_{split}", f"y_{split}") for split in ("train", "val", "test")}
    elif {"x", "y"} <= keys:
        accepted, parts = {"x", "y"}, {"train": ("x", "y")}
    else:
        raise DataError(
            f"{file} has keys {sorted(keys)}; expected the layout {_NPZ_LAYOUTS}; {_NPZ_SAVE}"
        )
    if keys - accepted:
        raise DataError(
            f"{file} has unexpected keys {sorted(keys - accepted)} next to "
            f"{sorted(keys & accepted)}; rename or remove them (accepted layout: {_NPZ_LAYOUTS})"
        )
    for split, (x_key, y_key) in list(parts.items()):
        if (x_key in keys) != (y_key in keys):
            present, absent = (x_key, y_key) if x_key in keys else (y_key, x_key)
            raise DataError(f"{file} has {present} but no {absent}; save both or neither")
        if x_key not in keys:
            del parts[split]
    return parts


def _check_xy(arrays: dict[str, np.ndarray], x_key: str, y_key: str, file: Path) -> None:
    x, y = arrays[x_key], arrays[y_key]
    if not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool
    ):
        raise DataError(f"{file}: {x_key} has dtype {x.dtype}; inputs must be float or int numbers")
    if x.ndim < 2:
        raise DataError(
            f"{file}: {x_key} has shape {x.shape}; inputs must be shaped (n, ...), "
            "e.g. x.reshape(-1, 1)"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{file}: {y_key} has shape {y.shape} and dtype {y.dtype}; labels must be integer "
            "class indices 0..K-1 shaped (n,): save y.astype(np.int64) (for one-hot labels, "
            "y.argmax(1))"
        )
    if len(x) != len(y):
        raise DataError(
            f"{file}: {x_key} has {len(x)} items but {y_key} has {len(y)}; they must match"
        )
    if len(y) and y.min() < 0:
        raise DataError(
            f"{file}: {y_key} has negative labels (min {y.min()}); labels must be class "
            "indices 0..K-1"
        )
    if x_key in ("x", "x_train") and len(y) == 0:
        raise DataError(f"{file}: {x_key} is empty; the training data needs at least one item")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(
            f"{file}: {x_key} has NaN or infinite values; clean or impute them before saving"
        )


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Entry:
    description: str
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    load: Callable[..., Dataset]  # called with seed=, val_size= and the options below
    options: tuple[str, ...]  # which of root= / path= the loader reads
    check: Callable[[], tuple[bool, str]]  # (available, hint)


_REGISTRY: dict[str, _Entry] = {
    "fashion-mnist": _Entry(
        "Fashion-MNIST, 28x28 greyscale clothing images (Debian package dataset-fashion-mnist)",
        (1, 28, 28),
        10,
        _load_fashion_mnist,
        ("root",),
        _check_fashion_mnist,
    ),
    "digits": _Entry(
        "scikit-learn's 1797 8x8 handwritten digits, split 60/20/20",
        (1, 8, 8),
        10,
        _load_digits,
        (),
        _check_package("sklearn", "scikit-learn"),
    ),
    "mnist1d": _Entry(
        "MNIST-1D, 5000 length-40 signals generated in code by the mnist1d package",
        (40,),
        10,
        _load_mnist1d,
        (),
        _check_package("mnist1d", "mnist1d"),
    ),
    "npz": _Entry(
        "your own arrays from an .npz file (path=...)",
        None,
        None,
        _load_npz,
        ("path",),
        lambda: (True, f"pass path= to an .npz holding {_NPZ_LAYOUTS}"),
    ),
}


def _lookup(name: str) -> tuple[str, _Entry]:
    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_REGISTRY))}")
    return key, _REGISTRY[key]
