"""Shared fixtures: the golden vectors copied from ../shared/golden (recorded from witin_nn 0.1.3)."""
import glob
import os

import numpy as np

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")


def golden_cases(*prefixes):
    """Sorted case names in tests/golden whose names start with one of `prefixes`."""
    names = sorted(os.path.basename(f)[:-4] for f in glob.glob(os.path.join(GOLDEN_DIR, "*.npz")))
    return [n for n in names if n.startswith(prefixes)]


def load_golden(name):
    return np.load(os.path.join(GOLDEN_DIR, name + ".npz"))


class Replay:
    """A random source that returns recorded standard-normal draws in order (chip.md §6 contract)."""

    def __init__(self, arrays):
        self.arrays = [np.asarray(a, np.float32) for a in arrays]
        self.shapes = []

    def standard_normal(self, size=None, dtype=np.float32):
        assert self.arrays, "layer drew more noise than the reference did"
        a = self.arrays.pop(0)
        self.shapes.append(tuple(size))
        assert tuple(size) == a.shape, f"draw shape {tuple(size)} != recorded {a.shape}"
        assert dtype == np.float32
        return a.copy()


def central_diff(f, a, h):
    """Central finite differences of the scalar f() with respect to every element of float64 array `a`."""
    g = np.zeros(a.shape, np.float64)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = f()
        a[i] = old - h
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g
