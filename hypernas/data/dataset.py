"""The plain layout every dataset loads to, and the config that names one.

A :class:`Dataset` holds three :class:`Split` objects (train, val, test) of float32 inputs and
int64 labels; :class:`DataConfig` says how to load one again (it is saved with every run). The
loaders live beside this module, one per source; :mod:`hypernas.data` gives the public names.

Example:
    >>> s = Split(torch.zeros(6, 1, 4, 4), torch.arange(6) % 3)
    >>> resize_split(s, 2).x.shape
    torch.Size([6, 1, 2, 2])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import HypernasError
from .contract import InputContract
from .splits import hold_out

__all__ = [
    "DataConfig",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Split",
    "arrays_to_split",
    "check_count",
    "check_room",
    "resize_dataset",
    "resize_split",
]


class DatasetNotFoundError(HypernasError, FileNotFoundError):
    """A dataset is not available here: its files are missing or the package providing it is not
    installed. The message says how to install it or where to point hypernas."""


class DataError(HypernasError, ValueError):
    """The data, or the arguments describing it, are wrong; the message names the fix."""


@dataclass(frozen=True, eq=False, repr=False)
class Split:
    """One split of a dataset: inputs and their class labels.

    Args:
        x: inputs, float32.
        y: class labels 0..K-1, int64.

    Shapes:
        x: (n, *input_shape), y: (n,)

    Example:
        >>> s = Split(torch.zeros(10, 3), torch.arange(10) % 2)
        >>> len(s), len(s.subset(4))
        (10, 4)
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if not (isinstance(self.x, Tensor) and isinstance(self.y, Tensor)):
            raise DataError(
                "Split needs torch tensors: Split(torch.as_tensor(x), torch.as_tensor(y))"
            )
        if self.x.dtype != torch.float32 or self.y.dtype != torch.int64:
            raise DataError(
                f"Split needs float32 x and int64 y, got {self.x.dtype} and {self.y.dtype}: "
                "pass x.float() and y.long()"
            )
        if self.x.ndim < 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise DataError(
                "Split needs x shaped (n, *input_shape) and y shaped (n,), got x "
                f"{tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, x=float32{list(self.x.shape)}, y=int64{list(self.y.shape)})"

    def subset(self, n: int, seed: int = 0) -> Split:
        """A fixed, seeded, class-balanced random subset of ``n`` items, in their original order.

        The same seed gives nested subsets: ``subset(50, s)`` lies inside ``subset(100, s)``.

        Args:
            n: how many items; the whole split is returned when ``n >= len(self)``.
            seed: which subset.

        Example:
            >>> s = Split(torch.zeros(10, 3), torch.arange(10) % 2)
            >>> s.subset(4, seed=1).y.bincount().tolist()
            [2, 2]
        """
        check_count("n", n)
        check_count("seed", seed)
        if n >= len(self):
            return self
        _, picked = hold_out(self.y.cpu().numpy(), n, seed)
        index = torch.from_numpy(picked).to(self.x.device)
        return Split(self.x[index], self.y[index])

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over ``(x, y)`` mini-batches; the last, partial batch is included.

        Args:
            batch_size: items per batch (the last batch may be smaller).
            shuffle: visit the items in a random order instead of in order.
            seed: seed of that order: the same seed gives the same batches; ``None`` draws a
                fresh order on each call. Ignored when ``shuffle`` is False.

        Shapes:
            yields x: (b, *input_shape), y: (b,) with b <= batch_size

        Example:
            >>> s = Split(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long))
            >>> [len(y) for _, y in s.batches(4, shuffle=True, seed=0)]
            [4, 4, 2]
        """
        check_count("batch_size", batch_size, minimum=1)
        if seed is not None:
            check_count("seed", seed)
        order = None
        if shuffle:
            order = torch.from_numpy(np.random.default_rng(seed).permutation(len(self)))
        return self._iter_batches(batch_size, order)

    def _iter_batches(
        self, batch_size: int, order: Tensor | None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self), batch_size):
            if order is None:  # contiguous slices are views, no copy
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                index = order[start : start + batch_size].to(self.x.device)
                yield self.x[index], self.y[index]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named classification dataset with train, validation and test splits.

    Args:
        name: the name :func:`load_dataset` knows it by.
        input_shape: shape of one input, without the batch dimension, e.g. ``(1, 28, 28)``.
        num_classes: labels lie in ``0..num_classes-1``.
        train, val, test: the splits; ``val`` is held out of the training data for
            validation and architecture scoring, ``test`` is only for final numbers.
        contract: how a raw input becomes one of these inputs (scaling, standardisation,
            resizing, label names), recorded in every exported model's card.

    Example:
        >>> from hypernas.data import load_dataset
        >>> load_dataset("digits").describe()["sizes"]
        {'train': 1079, 'val': 359, 'test': 359}
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    train: Split
    val: Split
    test: Split
    contract: InputContract | None = None  # raw input -> these splits' inputs (None: unknown)

    def __post_init__(self) -> None:
        for split_name, split in self._splits().items():
            if tuple(split.x.shape[1:]) != tuple(self.input_shape):
                raise DataError(
                    f"{self.name}: {split_name} inputs have shape {tuple(split.x.shape[1:])}, "
                    f"but input_shape is {tuple(self.input_shape)}; make every split's x "
                    "(n, *input_shape)"
                )
            if len(split) and not 0 <= int(split.y.min()) <= int(split.y.max()) < self.num_classes:
                raise DataError(
                    f"{self.name}: {split_name} labels must lie in 0..{self.num_classes - 1}, "
                    f"found {int(split.y.min())}..{int(split.y.max())}; raise num_classes or fix "
                    "the labels"
                )

    def _splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def describe(self) -> dict[str, Any]:
        """Name, input shape, number of classes and split sizes, as plain JSON-able data."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "sizes": {name: len(split) for name, split in self._splits().items()},
        }


@dataclass(frozen=True)
class DataConfig:
    """How to load a dataset; saved with a run so the run's data can be loaded again exactly.

    Example:
        >>> from hypernas.data import load_dataset_from_config
        >>> cfg = DataConfig(name="digits", seed=1)
        >>> load_dataset_from_config(cfg).name, cfg.to_dict()["seed"]
        ('digits', 1)
    """

    name: str = "fashion-mnist"  # which dataset; list_datasets() names them all
    seed: int = 0  # seed of the train/validation split; the test split never depends on it
    # Items held out of the training data for validation and scoring. None = the dataset's
    # default: 5000 for fashion-mnist, 1000 for mnist1d, 20% for digits, 15% for npz.
    val_size: int | None = None
    # Folder of the fashion-mnist files; None = $HYPERNAS_FASHION_MNIST_DIR, else the Debian path.
    root: str | None = None
    path: str | None = None  # the .npz file read by name="npz"; unused by the other datasets

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict; ``DataConfig(**cfg.to_dict())`` rebuilds it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`list_datasets` says about one dataset."""

    name: str  # the name load_dataset() takes
    description: str  # one line: what it is and where it comes from
    input_shape: tuple[int, ...] | None  # shape of one input; None when it depends on the file
    num_classes: int | None  # None when it depends on the file
    available: bool  # whether it can be loaded here as things stand
    hint: str  # how to make it available (or, for npz, how to use it); "" when nothing is needed


def check_count(what: str, value: int, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{what} must be an int >= {minimum}, got {value!r}")


def check_room(name: str, held_out: int, pool: int) -> None:
    if held_out > pool - 1:
        raise DataError(
            f"{name}: cannot hold out {held_out} of {pool} training items and keep any for "
            f"training; pass val_size between 0 and {max(pool - 1, 0)}"
        )


def arrays_to_split(x: np.ndarray, y: np.ndarray) -> Split:
    """Numpy arrays to a Split, copying only when needed (cached arrays are read-only)."""

    def tensor(a: np.ndarray, dtype: type) -> Tensor:
        a = np.ascontiguousarray(a, dtype=dtype)
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    return Split(tensor(x, np.float32), tensor(y, np.int64))


def resize_split(split: Split, resolution: int | None) -> Split:
    """Images area-resized to ``resolution x resolution`` (vectors and ``None`` pass through)."""
    if resolution is None or split.x.dim() != 4 or split.x.shape[-1] == resolution:
        return split
    return Split(F.interpolate(split.x, size=(resolution, resolution), mode="area"), split.y)


def resize_dataset(ds: Dataset, resolution: int | None) -> Dataset:
    """``ds`` with every split's images at ``resolution`` (see :func:`resize_split`)."""
    splits = {k: resize_split(getattr(ds, k), resolution) for k in ("train", "val", "test")}
    shape = tuple(splits["train"].x.shape[1:])
    contract = ds.contract.resized(shape) if ds.contract is not None else None
    return dataclasses.replace(ds, input_shape=shape, contract=contract, **splits)
