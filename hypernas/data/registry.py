"""The datasets hypernas knows by name, and the functions that load them.

Each name maps to an :class:`Entry`: what the dataset is, its shape where fixed, its loader,
which of ``root=`` / ``path=`` that loader reads, and a check of whether it can be loaded here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .dataset import DataConfig, DataError, Dataset, DatasetInfo, check_count
from .fashion_mnist import check_fashion_mnist, load_fashion_mnist
from .npz import NPZ_LAYOUTS, load_npz
from .packaged import check_package, load_digits, load_mnist1d

__all__ = ["REGISTRY", "Entry", "data_config", "list_datasets", "load_dataset",
           "load_dataset_from_config", "lookup"]


@dataclass(frozen=True)
class Entry:
    description: str
    input_shape: tuple[int, ...] | None
    num_classes: int | None
    load: Callable[..., Dataset]  # called with seed=, val_size= and the options below
    options: tuple[str, ...]  # which of root= / path= the loader reads
    check: Callable[[], tuple[bool, str]]  # (available, hint)


REGISTRY: dict[str, Entry] = {
    "fashion-mnist": Entry(
        "Fashion-MNIST, 28x28 greyscale clothing images (Debian package dataset-fashion-mnist)",
        (1, 28, 28),
        10,
        load_fashion_mnist,
        ("root",),
        check_fashion_mnist,
    ),
    "digits": Entry(
        "scikit-learn's 1797 8x8 handwritten digits, split 60/20/20",
        (1, 8, 8),
        10,
        load_digits,
        (),
        check_package("sklearn", "scikit-learn"),
    ),
    "mnist1d": Entry(
        "MNIST-1D, 5000 length-40 signals generated in code by the mnist1d package",
        (40,),
        10,
        load_mnist1d,
        (),
        check_package("mnist1d", "mnist1d"),
    ),
    "npz": Entry(
        "your own arrays from an .npz file (--data path/to/file.npz; path= in Python)",
        None,
        None,
        load_npz,
        ("path",),
        lambda: (True, f"give --data path/to/file.npz (path= in Python), holding {NPZ_LAYOUTS}"),
    ),
}


def lookup(name: str) -> tuple[str, Entry]:
    key = str(name).strip().lower().replace("_", "-")
    if key not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return key, REGISTRY[key]


def load_dataset(
    name: str = "fashion-mnist",
    *,
    seed: int = 0,
    val_size: int | None = None,
    root: str | None = None,
    path: str | None = None,
) -> Dataset:
    """Load a dataset by name, split into train, validation and test.

    Args:
        name: one of the names in :func:`list_datasets` (``-`` and ``_`` are interchangeable).
        seed: seed of the train/validation split. The test split never depends on it, so test
            numbers stay comparable across seeds.
        val_size: items held out of the training data for validation; ``None`` = the
            dataset's default (see :class:`DataConfig`).
        root: folder holding the Fashion-MNIST files (fashion-mnist only).
        path: the ``.npz`` file (npz only).

    Shapes:
        each split's x: (n, *input_shape) float32, y: (n,) int64

    Example:
        >>> ds = load_dataset("digits", seed=0, val_size=100)
        >>> ds.train.x.shape, ds.val.y.shape
        (torch.Size([1338, 1, 8, 8]), torch.Size([100]))
    """
    key, entry = lookup(name)
    options = {"root": root, "path": path}
    for option, value in options.items():
        if value is not None and option not in entry.options:
            readers = [n for n, e in REGISTRY.items() if option in e.options]
            raise DataError(
                f"{option}= is not used by dataset {key!r} (only by {', '.join(readers)}); drop it"
            )
    check_count("seed", seed)
    if val_size is not None:
        check_count("val_size", val_size)
    return entry.load(
        seed=seed, val_size=val_size, **{option: options[option] for option in entry.options}
    )


def data_config(data: str, seed: int = 0) -> DataConfig:
    """The :class:`DataConfig` a command line's ``--data`` names: a dataset's name, or the path
    of your own ``.npz`` file (kept absolute, so the run loads it again from any folder).

    Example:
        >>> data_config("digits", seed=1).name
        'digits'
    """
    from pathlib import Path

    text = str(data).strip()
    if text.lower().endswith(".npz"):
        file = Path(text).expanduser()
        if not file.is_file():
            raise DataError(f"no .npz file at {file}; give --data the path of a file saved with "
                            f"numpy.savez holding {NPZ_LAYOUTS}")
        return DataConfig(name="npz", seed=seed, path=str(file.resolve()))
    key, _ = lookup(text)
    if key == "npz":
        raise DataError("--data npz needs the file: give its path instead, --data "
                        "path/to/file.npz")
    return DataConfig(name=key, seed=seed)


def load_dataset_from_config(cfg: DataConfig) -> Dataset:
    """Load the dataset a :class:`DataConfig` describes; see :func:`load_dataset`."""
    return load_dataset(
        cfg.name, seed=cfg.seed, val_size=cfg.val_size, root=cfg.root, path=cfg.path
    )


def list_datasets() -> list[DatasetInfo]:
    """Every dataset hypernas can load, and whether it is available here.

    Example:
        >>> [info.name for info in list_datasets()]
        ['digits', 'fashion-mnist', 'mnist1d', 'npz']
    """
    return [
        DatasetInfo(name, entry.description, entry.input_shape, entry.num_classes, *entry.check())
        for name, entry in sorted(REGISTRY.items())
    ]
