"""Datasets as .npz files and seeded mini-batches.

File format (`load_npz`): an .npz with x_train, y_train, x_test, y_test; x float (N, ...) and y integer class
labels (N,) for classification, or float targets for regression. Optional: `classes` (names), `description`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

__all__ = ["Dataset", "load_npz", "batches"]

KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    """Train and test arrays. x float32 (N, ...), y int64 labels (N,) or float32 targets."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""

    @property
    def n_classes(self) -> Optional[int]:
        if self.y_train.dtype.kind in "iu":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return None


def load_npz(path) -> Dataset:
    """Read a dataset file; refuses missing keys, mismatched lengths and non-finite inputs with a message."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such dataset file")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in KEYS if k not in z.files]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; a dataset .npz holds {list(KEYS)}")
    arr = {k: z[k] for k in KEYS}
    for split in ("train", "test"):
        x, y = arr["x_" + split], arr["y_" + split]
        if x.dtype.kind not in "fiu" or len(x) != len(y):
            raise ValueError(f"{path}: x_{split} {x.shape} {x.dtype} and y_{split} {y.shape} must be numeric with "
                             f"the same length")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{path}: x_{split} contains NaN or inf")
    cast = (lambda y: y.astype(np.int64)) if arr["y_train"].dtype.kind in "iu" else (lambda y: y.astype(np.float32))
    return Dataset(arr["x_train"].astype(np.float32), cast(arr["y_train"]), arr["x_test"].astype(np.float32),
                   cast(arr["y_test"]), name=os.path.splitext(os.path.basename(path))[0])


def batches(x, y, batch_size: int, rng: Optional[np.random.Generator] = None) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of (x, y); shuffled with `rng` (a seeded Generator: the same seed, the same order)."""
    n = len(x)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]
