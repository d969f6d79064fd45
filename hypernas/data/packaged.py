"""Datasets that ship inside a Python package: scikit-learn's digits and MNIST-1D (generated in code).

Both are small enough to load in a second or two, which is what the tests and quick trials use.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import random
from collections.abc import Callable

import numpy as np

from .contract import InputContract
from .dataset import Dataset, DatasetNotFoundError, arrays_to_split, check_room
from .splits import carve, hold_out

__all__ = ["check_package", "load_digits", "load_mnist1d"]

def load_digits(*, seed: int, val_size: int | None) -> Dataset:
    from sklearn.datasets import (
        load_digits as sklearn_digits,  # lazy: scikit-learn takes seconds to import
    )

    bunch = sklearn_digits()
    x = bunch.data.reshape(-1, 1, 8, 8) / 16.0  # (1797, 1, 8, 8), in [0, 1]
    y = bunch.target.astype(np.int64)
    n_test = round(0.2 * len(y))
    n_val = n_test if val_size is None else val_size
    check_room("digits", n_val, len(y) - n_test)
    train, val, test = carve(y, n_test, n_val, seed)
    mean, std = x[train].mean(), x[train].std()  # standardise with training statistics only
    x = (x - mean) / std
    parts = {
        name: arrays_to_split(x[index], y[index])
        for name, index in (("train", train), ("val", val), ("test", test))
    }
    contract = InputContract(raw_shape=(1, 8, 8), scale=1 / 16, mean=(float(mean),),
                             std=(float(std),), raw_range=(0.0, 16.0),
                             labels=tuple(str(d) for d in range(10)))
    return Dataset(name="digits", input_shape=(1, 8, 8), num_classes=10, contract=contract,
                   **parts)


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


def load_mnist1d(*, seed: int, val_size: int | None) -> Dataset:
    x, y, x_test, y_test = _mnist1d_arrays()  # (4000, 40), (4000,), (1000, 40), (1000,)
    n_val = 1000 if val_size is None else val_size
    check_room("mnist1d", n_val, len(y))
    train, val = hold_out(y, n_val, seed)
    return Dataset(
        name="mnist1d",
        input_shape=(x.shape[1],),
        num_classes=10,
        train=arrays_to_split(x[train], y[train]),
        val=arrays_to_split(x[val], y[val]),
        test=arrays_to_split(x_test, y_test),
        contract=InputContract(raw_shape=(x.shape[1],), interpolation=None,
                               raw_range=(float(x.min()), float(x.max())), layout="NL",
                               channels="one signal of 40 samples",
                               labels=tuple(str(d) for d in range(10))),
    )


def check_package(module: str, package: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        if importlib.util.find_spec(module) is None:
            return False, f"pip install {package}"
        return True, ""

    return check
