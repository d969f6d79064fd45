"""Datasets: Fashion-MNIST, scikit-learn digits, MNIST-1D and your own ``.npz`` file.

Takes a name (or a :class:`DataConfig`); gives a :class:`Dataset`: three :class:`Split` objects
(train, val, test) of float32 inputs and int64 labels. Nothing is downloaded: Fashion-MNIST is
read from the Debian package ``dataset-fashion-mnist``, digits ships inside scikit-learn,
MNIST-1D is generated in code, and ``npz`` reads a file you made (its arrays are used as saved,
cast to float32: normalise them before saving). Decoded data is cached in-process, so loading a
dataset a second time is fast.

    dataset.py        Split, Dataset, DataConfig; resizing; the checks every loader shares
    contract.py       InputContract, Preprocess: what a raw input goes through (for exports)
    splits.py         seeded, class-stratified train / validation / test indices
    fashion_mnist.py  the IDX files of Debian's dataset-fashion-mnist
    packaged.py       digits (scikit-learn) and MNIST-1D (generated in code)
    npz.py            your own arrays
    registry.py       the names, load_dataset and list_datasets

Example:
    >>> ds = load_dataset("digits", seed=0)
    >>> ds.input_shape, ds.num_classes, len(ds.train), len(ds.val), len(ds.test)
    ((1, 8, 8), 10, 1079, 359, 359)
"""

from .contract import InputContract, Preprocess
from .dataset import (
                      DataConfig,
                      DataError,
                      Dataset,
                      DatasetInfo,
                      DatasetNotFoundError,
                      Split,
                      resize_dataset,
                      resize_split,
)
from .registry import list_datasets, load_dataset, load_dataset_from_config

__all__ = [
    "InputContract",
    "Preprocess",
    "DataConfig",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Split",
    "list_datasets",
    "load_dataset",
    "load_dataset_from_config",
    "resize_dataset",
    "resize_split",
]
