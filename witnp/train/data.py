"""Datasets as .npz files and seeded mini-batches.

File format (`load_npz`): an .npz with x_train, y_train, x_test, y_test; x float (N, ...) and y integer class
labels (N,) for classification, integer labels per frame (N, T) with x (N, T, ...) for frame classification,
or float targets for regression (N, ...), per example or per frame (`witnp.train.tasks`).

Variable-length sequences: padded to the longest, with `lengths_train`, `lengths_test` (and `lengths_val` with
x_val): integers (N,) in 1..T, T the padded length on `time_axis` (a scalar in the file; default 1, x (N, T,
...) as a GRU takes it; 2 for Conv1d's (N, C, T)). Labels per frame (y (N, T)) are padded the same way. Such
data is batched by length (`batches`): every batch holds sequences of one length, cropped to it, so a GRU's
last state is each sequence's own, and nothing past a length reaches a loss or a metric. Optional: x_val, y_val (a validation split;
else `with_validation` holds one out of the training split), `classes` (names), `description`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

__all__ = ["Dataset", "load_npz", "batches", "with_validation", "length_groups", "crop"]

KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class Dataset:
    """Train and test arrays. x float32 (N, ...), y int64 labels (N,) or float32 targets."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""
    source: str = ""  # how to load it again: a shipped dataset's name or the .npz path (recorded in model files)
    x_val: Optional[np.ndarray] = None  # the validation split: model selection and early stopping (fit)
    y_val: Optional[np.ndarray] = None
    lengths_train: Optional[np.ndarray] = None  # variable-length sequences: each example's length (module doc)
    lengths_test: Optional[np.ndarray] = None
    lengths_val: Optional[np.ndarray] = None
    time_axis: int = 1

    def split(self, name: str):
        """(x, y, lengths) of "train", "val" or "test"."""
        return getattr(self, "x_" + name), getattr(self, "y_" + name), getattr(self, "lengths_" + name)

    @property
    def n_classes(self) -> Optional[int]:
        if self.y_train.dtype.kind in "iu":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return None


def load_npz(path, source: Optional[str] = None) -> Dataset:
    """Read a dataset file; refuses missing keys, mismatched lengths, empty splits, non-finite inputs and
    class labels outside 0..K-1 with a message naming the file and the array. source: what `Dataset.source`
    records (default: the absolute path)."""
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
        if len(x) == 0:
            raise ValueError(f"{path}: x_{split} is empty; expected at least one example in the {split} split")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{path}: x_{split} contains NaN or inf")
        if y.dtype.kind not in "fiu":
            raise ValueError(f"{path}: y_{split} has dtype {y.dtype}; expected integer class labels or float targets")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{path}: y_{split} contains NaN or inf")
    if (arr["y_train"].dtype.kind in "iu") != (arr["y_test"].dtype.kind in "iu"):
        raise ValueError(f"{path}: y_train ({arr['y_train'].dtype}) and y_test ({arr['y_test'].dtype}) must both be "
                         f"integer labels or both float targets")
    if arr["y_train"].dtype.kind in "iu":
        for split in ("train", "test"):
            y, x = arr["y_" + split], arr["x_" + split]
            if y.ndim not in (1, 2) or y.min() < 0:
                raise ValueError(f"{path}: y_{split} holds class labels {y.min()}..{y.max()} in shape {y.shape}; "
                                 f"expected one label per example (N,) or per frame (N, T), each in 0..K-1")
            if y.ndim == 2 and (x.ndim < 2 or x.shape[1] != y.shape[1]):
                raise ValueError(f"{path}: y_{split} {y.shape} labels frames, but x_{split} is {x.shape}; expected "
                                 f"x (N, T, ...) with the same T = {y.shape[1]} frames")
        if arr["y_train"].ndim != arr["y_test"].ndim:
            raise ValueError(f"{path}: y_train {arr['y_train'].shape} and y_test {arr['y_test'].shape}: expected "
                             f"both a label per example or both a label per frame")
    cast = (lambda y: y.astype(np.int64)) if arr["y_train"].dtype.kind in "iu" else (lambda y: y.astype(np.float32))
    val = {}
    if ("x_val" in z.files) != ("y_val" in z.files):
        raise ValueError(f"{path}: has {'x_val' if 'x_val' in z.files else 'y_val'} alone; a validation split needs "
                         f"both x_val and y_val")
    if "x_val" in z.files:
        xv, yv = z["x_val"], z["y_val"]
        if xv.dtype.kind not in "fiu" or len(xv) != len(yv) or len(xv) == 0 or xv.shape[1:] != arr["x_train"].shape[1:]:
            raise ValueError(f"{path}: x_val {xv.shape} {xv.dtype} and y_val {yv.shape}: expected a non-empty numeric "
                             f"split shaped like x_train {arr['x_train'].shape[1:]}, one target per example")
        if ((yv.dtype.kind in "iu") != (arr["y_train"].dtype.kind in "iu") or yv.shape[1:] != arr["y_train"].shape[1:]
                or (yv.dtype.kind in "iu" and yv.min() < 0)):
            raise ValueError(f"{path}: y_val {yv.shape} {yv.dtype} must hold the same kind and shape of targets as "
                             f"y_train {arr['y_train'].shape[1:]} {arr['y_train'].dtype}, labels in 0..K-1")
        val = dict(x_val=xv.astype(np.float32), y_val=cast(yv))
    return Dataset(arr["x_train"].astype(np.float32), cast(arr["y_train"]), arr["x_test"].astype(np.float32),
                   cast(arr["y_test"]), name=os.path.splitext(os.path.basename(path))[0],
                   source=source or os.path.abspath(path), **val, **_lengths(path, z, arr, val))


def _lengths(path, z, arr, val) -> dict:
    """lengths_* and time_axis of a file, checked: all splits or none, integers in 1..T, one per example."""
    names = [k for k in ("lengths_train", "lengths_test", "lengths_val") if k in z.files]
    if not names:
        if "time_axis" in z.files:
            raise ValueError(f"{path}: time_axis without lengths_train / lengths_test; time_axis says where "
                             f"variable-length sequences run")
        return {}
    want = ["lengths_train", "lengths_test"] + (["lengths_val"] if val else [])
    if sorted(names) != sorted(want):
        raise ValueError(f"{path}: has {names}; variable-length data needs {want} (one per split)")
    axis = int(z["time_axis"]) if "time_axis" in z.files else 1
    out = {"time_axis": axis}
    xs = {"train": arr["x_train"], "test": arr["x_test"], "val": val.get("x_val")}
    for k in want:
        split = k.split("_")[1]
        x, n = xs[split], z[k]
        if not 1 <= axis < x.ndim:
            raise ValueError(f"{path}: time_axis = {axis}, but x_{split} is {x.shape}; expected an axis in 1..{x.ndim - 1}")
        T = x.shape[axis]
        if n.dtype.kind not in "iu" or n.shape != (len(x),) or (len(n) and (n.min() < 1 or n.max() > T)):
            raise ValueError(f"{path}: {k} {n.shape} {n.dtype}: expected one integer length per example, each in "
                             f"1..{T} (x_{split}'s padded length on time_axis {axis})")
        out[k] = n.astype(np.int64)
    return out


def with_validation(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """`data` with a validation split: its own x_val/y_val when it has them, else `fraction` of the training
    split held out (seeded; stratified by class for a label per example: each class gives round(fraction·count),
    at least one where it has two or more). fraction 0 and no x_val: the data as it is (fit then validates on
    the test split, as before witnp had validation splits)."""
    if data.x_val is not None:
        return data
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 <= fraction < 1):
        raise ValueError(f"val_fraction = {fraction!r}: expected a number in [0, 1)")
    if fraction == 0:
        return data
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    n = len(data.x_train)
    if data.y_train.dtype.kind in "iu" and data.y_train.ndim == 1:  # a label per example: stratified
        held = []
        for c in np.unique(data.y_train):
            idx = np.flatnonzero(data.y_train == c)
            k = int(round(fraction * len(idx)))
            k = max(k, 1) if len(idx) >= 2 else 0
            held.append(rng.permutation(idx)[:k])
        held = np.sort(np.concatenate(held))
    else:
        held = np.sort(rng.permutation(n)[:int(round(fraction * n))])
    if len(held) == 0 or len(held) == n:
        raise ValueError(f"val_fraction = {fraction}: holds out {len(held)} of {n} training examples; expected some, "
                         f"not all")
    keep = np.setdiff1d(np.arange(n), held)
    lt = data.lengths_train
    return Dataset(data.x_train[keep], data.y_train[keep], data.x_test, data.y_test, name=data.name,
                   source=data.source, x_val=data.x_train[held], y_val=data.y_train[held],
                   lengths_train=None if lt is None else lt[keep], lengths_test=data.lengths_test,
                   lengths_val=None if lt is None else lt[held], time_axis=data.time_axis)


def batches(x, y, batch_size: int, rng: Optional[np.random.Generator] = None, lengths=None,
            time_axis: int = 1) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Mini-batches of (x, y); shuffled with `rng` (a seeded Generator: the same seed, the same order).

    With lengths (N,): batches of one length each, cropped to it on time_axis (and y's axis 1 when y is per
    frame): the examples of each length shuffled and cut into batches, then the batches shuffled."""
    n = len(x)
    if lengths is None:
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield x[idx], y[idx]
        return
    for idx in length_groups(lengths, batch_size, rng):
        yield crop(x, y, idx, int(lengths[idx[0]]), time_axis)


def length_groups(lengths, batch_size: int, rng: Optional[np.random.Generator] = None):
    """Index arrays, each of examples of one length (at most batch_size): shuffled within a length and in
    their order when rng is given, else by length then index."""
    lengths = np.asarray(lengths)
    out = []
    for L in np.unique(lengths):
        idx = np.flatnonzero(lengths == L)
        if rng is not None:
            idx = rng.permutation(idx)
        out += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if rng is not None:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


def crop(x, y, idx, length: int, time_axis: int = 1):
    """x[idx] and y[idx] cut to `length` steps (x on time_axis; y on axis 1 when it is per frame)."""
    T = x.shape[time_axis]
    xb = np.take(x[idx], np.arange(length), axis=time_axis) if length < T else x[idx]
    yb = y[idx]
    if y.ndim >= 2 and y.shape[1] == T and length < T:
        yb = yb[:, :length]
    return xb, yb
