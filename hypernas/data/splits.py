"""Seeded, class-stratified index splits: which items go to train, validation and test.

Plain numpy in, sorted index arrays out; the dataset loaders build their splits from these.

Example:
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> kept, held = hold_out(y, 2, seed=0)
    >>> sorted(y[held].tolist())
    [0, 1]
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEST_SEED", "carve", "hold_out", "stratified_order"]

# Fixed seed of the test split carved out of data that has none of its own (digits, some npz).
TEST_SEED = 20240601


def stratified_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(y))`` whose every prefix is close to class-balanced.

    Each item's key is (its random rank within its class + a random phase) / class size;
    sorting by key interleaves the classes in proportion to their sizes.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    # everything below is indexed by position in perm
    _, label, counts = np.unique(y[perm], return_inverse=True, return_counts=True)
    grouped = np.argsort(label, kind="stable")  # class by class, random order within a class
    rank = np.empty(len(y))  # rank of each item within its class
    rank[grouped] = np.arange(len(y)) - np.repeat(np.cumsum(counts) - counts, counts)
    key = (rank + rng.random(len(counts))[label]) / counts[label]
    return perm[np.argsort(key, kind="stable")]


def hold_out(y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, held_out) indices of ``y``, ``size`` of them held out, stratified by label."""
    order = stratified_order(y, seed)
    return np.sort(order[size:]), np.sort(order[:size])


def carve(
    y: np.ndarray, n_test: int, n_val: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices: test held out with a fixed seed, then val with ``seed``."""
    rest, test = hold_out(y, n_test, TEST_SEED)
    train, val = hold_out(y[rest], n_val, seed)
    return rest[train], rest[val], test
