"""Your own arrays from an ``.npz`` file: the layouts it may have and every check on what it holds.

The file is read with ``allow_pickle=False`` (a user's file never runs code); inputs are used as
saved, cast to float32, so normalise them before saving.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .contract import InputContract
from .dataset import DataError, Dataset, DatasetNotFoundError, arrays_to_split, check_room
from .splits import carve

__all__ = ["NPZ_LAYOUTS", "load_npz"]

NPZ_LAYOUTS = "x_train, y_train (plus optional x_val, y_val and x_test, y_test), or x, y"
_NPZ_SAVE = "save it with numpy.savez(path, x_train=..., y_train=...)"


def load_npz(*, seed: int, val_size: int | None, path: str | None) -> Dataset:
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
    check_room("npz", n_val, len(y) - n_test)
    train, val, test = carve(y, n_test, n_val, seed)
    splits = {
        "train": arrays_to_split(x[train], y[train]),
        "val": arrays_to_split(x[val], y[val]),
        "test": arrays_to_split(x[test], y[test]),
    }
    for name in ("val", "test"):
        if name in parts:
            splits[name] = arrays_to_split(arrays[parts[name][0]], arrays[parts[name][1]])
    num_classes = max(int(split.y.max()) + 1 for split in splits.values() if len(split))
    train_x = splits["train"].x
    contract = InputContract(  # the arrays are used as saved: the file's own preprocessing
        raw_shape=tuple(shape), raw_range=(float(train_x.min()), float(train_x.max()))
        if len(train_x) else (0.0, 0.0), interpolation="area" if len(shape) == 3 else None,
        layout="NCHW" if len(shape) == 3 else "N" + "x".join(map(str, shape)),
        channels="as saved in the file", labels=tuple(str(k) for k in range(num_classes)))
    return Dataset(name="npz", input_shape=tuple(shape), num_classes=num_classes,
                   contract=contract, **splits)


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
            f"{file} has keys {sorted(keys)}; expected the layout {NPZ_LAYOUTS}; {_NPZ_SAVE}"
        )
    if keys - accepted:
        raise DataError(
            f"{file} has unexpected keys {sorted(keys - accepted)} next to "
            f"{sorted(keys & accepted)}; rename or remove them (accepted layout: {NPZ_LAYOUTS})"
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
