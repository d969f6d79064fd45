"""Tests for hypernas.data: each dataset's shapes and splits, Split helpers, every bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import gzip
import io
import json
import os
import random
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import hypernas.data.packaged as datafiles
import hypernas.data as data
from hypernas.data import (
    DataConfig,
    DataError,
    Dataset,
    DatasetInfo,
    DatasetNotFoundError,
    Split,
    list_datasets,
    load_dataset,
    load_dataset_from_config,
)

FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_DIR = Path(
    os.environ.get("HYPERNAS_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
)


def rows(split: Split) -> list[bytes]:
    """One hashable key per item: the bytes of its input."""
    return [row.tobytes() for row in split.x.reshape(len(split), -1).numpy()]


def check_dataset(ds: Dataset, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Invariants every dataset keeps."""
    assert ds.input_shape == input_shape and ds.num_classes == num_classes
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape) == (len(split), *input_shape) and split.y.shape == (len(split),)
        assert len(split) == 0 or 0 <= int(split.y.min()) <= int(split.y.max()) < num_classes
        assert torch.isfinite(split.x).all()
    described = json.loads(json.dumps(ds.describe()))
    assert described == {
        "name": ds.name,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "sizes": {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)},
    }


# ----------------------------------------------------------------------------- registry and config


def test_list_datasets_names_every_dataset() -> None:
    infos = list_datasets()
    assert [info.name for info in infos] == ["digits", "fashion-mnist", "mnist1d", "npz"]
    assert all(isinstance(info, DatasetInfo) for info in infos)
    by_name = {info.name: info for info in infos}
    assert by_name["digits"].available and by_name["mnist1d"].available and by_name["npz"].available
    assert by_name["npz"].input_shape is None and "x_train" in by_name["npz"].hint
    assert by_name["mnist1d"].input_shape == (40,)
    assert by_name["fashion-mnist"].available == all(
        (FASHION_DIR / f).is_file() for f in FASHION_FILES
    )


def test_list_datasets_explains_missing_fashion_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPERNAS_FASHION_MNIST_DIR", str(tmp_path))
    info = {i.name: i for i in list_datasets()}["fashion-mnist"]
    assert not info.available and "apt-get install dataset-fashion-mnist" in info.hint


def test_unknown_name_lists_known_datasets() -> None:
    with pytest.raises(DataError, match="known datasets: digits, fashion-mnist, mnist1d, npz"):
        load_dataset("cifar-10")


def test_options_a_dataset_does_not_read_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"root= is not used by dataset 'digits' \(only by fashion-mnist\)"
    ):
        load_dataset("digits", root=str(tmp_path))
    with pytest.raises(DataError, match="path= is not used"):
        load_dataset("mnist1d", path="data.npz")


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_bad_seed_or_val_size_is_refused(bad: object) -> None:
    with pytest.raises(DataError, match="seed must be an int >= 0"):
        load_dataset("digits", seed=bad)  # type: ignore[arg-type]
    if bad is not None:
        with pytest.raises(DataError, match="val_size must be an int >= 0"):
            load_dataset("digits", val_size=bad)  # type: ignore[arg-type]


def test_held_out_items_keep_class_proportions() -> None:
    labels = torch.tensor([0] * 80 + [1] * 15 + [2] * 5)
    split = Split(torch.zeros(100, 1), labels)
    for seed in range(5):
        assert split.subset(20, seed=seed).y.bincount().tolist() == [16, 3, 1]


def test_data_config_is_frozen_and_round_trips() -> None:
    cfg = DataConfig(name="digits", seed=3, val_size=200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4  # type: ignore[misc]
    assert DataConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert DataConfig().to_dict() == {
        "name": "fashion-mnist",
        "seed": 0,
        "val_size": None,
        "root": None,
        "path": None,
    }
    from_cfg, direct = load_dataset_from_config(cfg), load_dataset("digits", seed=3, val_size=200)
    assert torch.equal(from_cfg.val.x, direct.val.x) and len(from_cfg.val) == 200


def test_docstring_examples_run() -> None:
    result = doctest.testmod(data, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- Split


@pytest.fixture
def toy() -> Split:
    return Split(torch.arange(30, dtype=torch.float32).reshape(10, 3), torch.arange(10) % 2)


def test_split_validates_its_tensors() -> None:
    with pytest.raises(DataError, match=r"x.float\(\)"):
        Split(torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="y shaped"):
        Split(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="torch tensors"):
        Split(np.zeros((4, 2), np.float32), torch.zeros(4, dtype=torch.long))  # type: ignore[arg-type]
    assert (
        repr(Split(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)))
        == "Split(n=4, x=float32[4, 2], y=int64[4])"
    )


def test_subset_is_seeded_nested_and_balanced(toy: Split) -> None:
    assert toy.subset(10) is toy and toy.subset(99) is toy
    assert len(toy.subset(0)) == 0
    small, large = toy.subset(4, seed=1), toy.subset(8, seed=1)
    assert torch.equal(small.x, toy.subset(4, seed=1).x)
    assert set(rows(small)) <= set(rows(large))
    assert small.y.bincount().tolist() == [2, 2]
    assert {tuple(toy.subset(4, seed=s).x[:, 0].tolist()) for s in range(10)} != {
        tuple(small.x[:, 0].tolist())
    }
    assert (small.x[1:, 0] > small.x[:-1, 0]).all()  # original order kept
    with pytest.raises(DataError, match="n must be an int >= 0"):
        toy.subset(-1)


def test_batches_in_order_include_the_last_partial_batch(toy: Split) -> None:
    batches = list(toy.batches(4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), toy.x)
    assert torch.equal(torch.cat([y for _, y in batches]), toy.y)


def test_shuffled_batches_are_deterministic_for_a_seed(toy: Split) -> None:
    def order(seed: int | None) -> list[float]:
        return torch.cat([x[:, 0] for x, _ in toy.batches(3, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(None)) == toy.x[:, 0].tolist()
    with pytest.raises(DataError, match="batch_size must be an int >= 1"):
        toy.batches(0)  # refused at the call, before iterating


def test_dataset_checks_shapes_and_labels(toy: Split) -> None:
    with pytest.raises(DataError, match="input_shape is"):
        Dataset("toy", (4,), 2, toy, toy, toy)
    with pytest.raises(DataError, match="labels must lie in 0..0"):
        Dataset("toy", (3,), 1, toy, toy, toy)


# ----------------------------------------------------------------------------- digits and mnist1d


def test_digits_shapes_and_stratified_split() -> None:
    ds = load_dataset("digits")
    check_dataset(ds, (1, 8, 8), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1079, 359, 359)
    assert ds.train.x.mean().abs() < 1e-5 and (ds.train.x.std() - 1).abs() < 1e-3
    assert ds.val.y.bincount().min() >= 34 and ds.test.y.bincount().min() >= 34
    train, val, test = set(rows(ds.train)), set(rows(ds.val)), set(rows(ds.test))
    assert len(train | val | test) == 1797


def test_digits_seed_moves_val_but_not_test() -> None:
    a, b, c = (
        load_dataset("digits", seed=0),
        load_dataset("digits", seed=0),
        load_dataset("digits", seed=1),
    )
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.val.y, c.val.y)
    assert torch.equal(a.test.y, c.test.y)  # same items; x differs only by the train statistics
    with pytest.raises(DataError, match="pass val_size between 0 and 1437"):
        load_dataset("digits", val_size=1438)


@pytest.fixture(scope="module")
def mnist1d_run() -> tuple[Dataset, str, bool]:
    """Generate MNIST-1D afresh, recording what it printed and whether it touched global RNGs."""
    datafiles._mnist1d_arrays.cache_clear()
    random.seed(123)
    np.random.seed(123)
    states = (random.getstate(), np.random.get_state()[1].copy())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ds = load_dataset("mnist1d")
    untouched = random.getstate() == states[0] and np.array_equal(
        np.random.get_state()[1], states[1]
    )
    return ds, out.getvalue(), untouched


def test_mnist1d_shapes_and_split(mnist1d_run: tuple[Dataset, str, bool]) -> None:
    ds, _, _ = mnist1d_run
    check_dataset(ds, (40,), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3000, 1000, 1000)
    assert not set(rows(ds.train)) & set(rows(ds.val))
    other = load_dataset("mnist1d", seed=1, val_size=500)
    assert len(other.val) == 500 and torch.equal(other.test.x, ds.test.x)
    assert not torch.equal(load_dataset("mnist1d", seed=1).val.x, ds.val.x)
    assert torch.equal(load_dataset("mnist1d").val.x, ds.val.x)


def test_mnist1d_is_quiet_and_leaves_global_rngs_alone(
    mnist1d_run: tuple[Dataset, str, bool],
) -> None:
    _, printed, untouched = mnist1d_run
    assert printed == ""
    assert untouched


# ------------------------------------------------------------------ fashion-mnist (real files)


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    if not all((FASHION_DIR / f).is_file() for f in FASHION_FILES):
        pytest.skip(
            f"Fashion-MNIST files not in {FASHION_DIR}; apt-get install dataset-fashion-mnist"
        )
    return load_dataset("fashion-mnist", root=str(FASHION_DIR))


def test_fashion_mnist_shapes_and_normalisation(fashion: Dataset) -> None:
    check_dataset(fashion, (1, 28, 28), 10)
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (55000, 5000, 10000)
    assert fashion.train.x.mean().abs() < 0.01 and (fashion.train.x.std() - 1).abs() < 0.01
    assert fashion.val.y.bincount().tolist() == [500] * 10


def test_fashion_mnist_split_partitions_the_training_images(fashion: Dataset) -> None:
    everything = load_dataset("fashion-mnist", root=str(FASHION_DIR), val_size=0)
    assert len(everything.train) == 60000 and len(everything.val) == 0
    assert Counter(rows(fashion.train)) + Counter(rows(fashion.val)) == Counter(
        rows(everything.train)
    )
    assert not set(rows(fashion.train)) & set(rows(fashion.val))


def test_fashion_mnist_split_is_seeded(fashion: Dataset) -> None:
    again = load_dataset("fashion-mnist", root=str(FASHION_DIR), seed=0)
    other = load_dataset("fashion-mnist", root=str(FASHION_DIR), seed=1)
    assert torch.equal(again.val.x, fashion.val.x)
    assert not torch.equal(other.val.x, fashion.val.x)
    assert torch.equal(other.test.x, fashion.test.x)


def test_fashion_mnist_reload_is_fast(fashion: Dataset) -> None:
    start = time.perf_counter()
    load_dataset("fashion-mnist", root=str(FASHION_DIR))
    assert time.perf_counter() - start < 3.0


# ------------------------------------------------------------- fashion-mnist (files we write)


def write_idx(path: Path, magic: int, array: np.ndarray, *, cut: int = 0) -> None:
    """Write ``array`` as a gzipped IDX file, optionally dropping the last ``cut`` data bytes."""
    raw = struct.pack(f">{array.ndim + 1}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw[: len(raw) - cut]))


def write_fashion(folder: Path, n_train: int = 20, n_test: int = 10) -> Path:
    """A tiny, valid Fashion-MNIST folder."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz", 2051, rng.integers(0, 256, (n, 28, 28))
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.arange(n) % 10)
    return folder


def test_fashion_mnist_reads_idx_files_from_root(tmp_path: Path) -> None:
    ds = load_dataset("Fashion_MNIST", root=str(write_fashion(tmp_path)), val_size=5)
    check_dataset(ds, (1, 28, 28), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 10)
    assert ds.test.y.tolist() == list(range(10))
    assert torch.allclose(ds.test.x.amin(), torch.tensor((0 - 0.2860) / 0.3530), atol=0.02)


def test_fashion_mnist_env_var_sets_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPERNAS_FASHION_MNIST_DIR", str(write_fashion(tmp_path)))
    assert len(load_dataset("fashion-mnist", val_size=2).train) == 18


def test_fashion_mnist_missing_files_say_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", root=str(tmp_path))
    message = str(err.value)
    assert (
        str(tmp_path) in message
        and "HYPERNAS_FASHION_MNIST_DIR" in message
        and "train-images-idx3-ubyte.gz" in message
    )
    assert isinstance(err.value, FileNotFoundError)
    monkeypatch.setenv("HYPERNAS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"set by \$HYPERNAS_FASHION_MNIST_DIR"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_val_size_must_leave_training_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="pass val_size between 0 and 19"):
        load_dataset("fashion-mnist", root=str(write_fashion(tmp_path)), val_size=20)


@pytest.mark.parametrize(
    "damage, words",
    [
        ("truncated-gzip", "not a readable gzip file"),
        ("not-gzip", "not a readable gzip file"),
        ("short-data", "truncated or corrupt"),
        ("wrong-magic", "expected magic 2051"),
        ("short-header", "shorter than its 16-byte IDX header"),
        ("label-count", "images and labels do not match"),
    ],
)
def test_fashion_mnist_corrupt_files_raise_data_error(
    tmp_path: Path, damage: str, words: str
) -> None:
    folder = write_fashion(tmp_path)
    images = folder / "train-images-idx3-ubyte.gz"
    pixels = np.zeros((20, 28, 28))
    if damage == "truncated-gzip":
        images.write_bytes(images.read_bytes()[:-40])
    elif damage == "not-gzip":
        images.write_bytes(b"this is not gzip at all")
    elif damage == "short-data":
        write_idx(images, 2051, pixels, cut=100)
    elif damage == "wrong-magic":
        write_idx(images, 2049, pixels)
    elif damage == "short-header":
        images.write_bytes(gzip.compress(b"\x00\x00\x08\x03"))
    elif damage == "label-count":
        write_idx(folder / "train-labels-idx1-ubyte.gz", 2049, np.zeros(19))
    with pytest.raises(DataError, match=words) as err:
        load_dataset("fashion-mnist", root=str(folder), val_size=5)
    assert str(folder) in str(err.value)


# ----------------------------------------------------------------------------- npz


def save(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def xy(
    n: int, shape: tuple[int, ...] = (3, 4), classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)), np.arange(n) % classes


def test_npz_x_y_layout_is_split_70_15_15(tmp_path: Path) -> None:
    x, y = xy(100)
    path = save(tmp_path, x=x, y=y)
    ds = load_dataset("npz", path=path)
    check_dataset(ds, (3, 4), 3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (70, 15, 15)
    assert len(set(rows(ds.train)) | set(rows(ds.val)) | set(rows(ds.test))) == 100
    same, other = load_dataset("npz", path=path), load_dataset("npz", path=path, seed=1)
    assert torch.equal(same.val.x, ds.val.x) and not torch.equal(other.val.x, ds.val.x)
    assert torch.equal(other.test.x, ds.test.x)
    assert len(load_dataset("npz", path=path, val_size=30).val) == 30


def test_npz_train_only_layout_carves_val_and_test(tmp_path: Path) -> None:
    x, y = xy(40, shape=(5,))
    ds = load_dataset(
        "npz", path=save(tmp_path, x_train=x.astype(np.int32), y_train=y.astype(np.uint8))
    )
    check_dataset(ds, (5,), 3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (28, 6, 6)


def test_npz_full_layout_is_used_as_is(tmp_path: Path) -> None:
    (x, y), (xv, yv), (xt, yt) = xy(30), xy(7, seed=1), xy(5, seed=2)
    yt[0] = 4  # a class seen only in the test split still counts
    ds = load_dataset(
        "npz", path=save(tmp_path, x_train=x, y_train=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    )
    check_dataset(ds, (3, 4), 5)
    assert len(ds.train) == 30 and torch.equal(ds.val.x, torch.from_numpy(xv).float())
    assert ds.test.y.tolist() == yt.tolist()


def test_npz_with_val_but_no_test(tmp_path: Path) -> None:
    (x, y), (xv, yv) = xy(20), xy(6, seed=1)
    ds = load_dataset("npz", path=save(tmp_path, x_train=x, y_train=y, x_val=xv, y_val=yv))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (17, 6, 3)
    with pytest.raises(DataError, match="drop val_size"):
        load_dataset(
            "npz", path=save(tmp_path, x_train=x, y_train=y, x_val=xv, y_val=yv), val_size=3
        )


def test_npz_needs_a_path_that_exists(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs path="):
        load_dataset("npz")
    with pytest.raises(DatasetNotFoundError, match="npz file not found.*numpy.savez"):
        load_dataset("npz", path=str(tmp_path / "absent.npz"))


def bad_npz_cases() -> list[tuple[str, dict[str, np.ndarray], str]]:
    x, y = xy(10)
    return [
        (
            "no-known-keys",
            {"images": x, "labels": y},
            r"has keys \['images', 'labels'\]; expected the layout x_train, y_train",
        ),
        ("extra-key", {"x_train": x, "y_train": y, "x_valid": x}, r"unexpected keys \['x_valid'\]"),
        ("x-without-y", {"x_train": x, "y_train": y, "x_test": x}, "has x_test but no y_test"),
        ("length-mismatch", {"x": x, "y": y[:9]}, "x has 10 items but y has 9"),
        (
            "float-labels",
            {"x": x, "y": y.astype(float)},
            r"labels must be integer class indices.*astype\(np.int64\)",
        ),
        ("one-hot-labels", {"x": x, "y": np.eye(3, dtype=int)[y]}, r"argmax\(1\)"),
        ("negative-labels", {"x": x, "y": y - 1}, "negative labels"),
        (
            "shape-mismatch",
            {"x_train": x, "y_train": y, "x_test": x[:, :2], "y_test": y},
            "same shape",
        ),
        ("flat-inputs", {"x": x[:, 0, 0], "y": y}, r"reshape\(-1, 1\)"),
        (
            "string-inputs",
            {"x": np.array(["a"] * 10)[:, None], "y": y},
            "must be float or int numbers",
        ),
        ("nan-inputs", {"x": np.full_like(x, np.nan), "y": y}, "NaN or infinite"),
        (
            "empty-train",
            {"x_train": x[:0], "y_train": y[:0], "x_test": x, "y_test": y},
            "x_train is empty",
        ),
    ]


@pytest.mark.parametrize(
    "arrays, words", [case[1:] for case in bad_npz_cases()], ids=[c[0] for c in bad_npz_cases()]
)
def test_npz_bad_contents_raise_data_error(
    tmp_path: Path, arrays: dict[str, np.ndarray], words: str
) -> None:
    with pytest.raises(DataError, match=words):
        load_dataset("npz", path=save(tmp_path, **arrays))


def test_npz_never_unpickles(tmp_path: Path) -> None:
    path = save(tmp_path, x=np.array([{"evil": 1}] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(DataError, match="plain numeric arrays"):
        load_dataset("npz", path=path)
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(b"\x80\x04K\x01.")  # a pickle stream, not a zip
    with pytest.raises(DataError, match="plain numeric arrays"):
        load_dataset("npz", path=str(pickled))


def test_npz_rejects_files_that_are_not_npz(tmp_path: Path) -> None:
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((3, 2)))
    with pytest.raises(DataError, match="single array"):
        load_dataset("npz", path=str(single))
    zipped = tmp_path / "broken.npz"
    zipped.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(DataError, match="could not read"):
        load_dataset("npz", path=str(zipped))
