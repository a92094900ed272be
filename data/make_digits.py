"""Build data/digits.npz and data/digits_rows.npz from the UCI optical-digits test set (as shipped in
scikit-learn's source tree: sklearn/datasets/data/digits.csv.gz). Run once; the outputs are committed.

usage: python data/make_digits.py path/to/digits.csv.gz
Needs only NumPy (scikit-learn itself is not a dependency: the CSV can be unzipped from its wheel).
"""
import gzip
import os
import sys

import numpy as np


def main(src):
    with gzip.open(src, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x, y = raw[:, :64].astype(np.float32) / 16.0, raw[:, 64]
    order = np.random.default_rng(20261122).permutation(len(x))  # fixed split: 1437 train / 360 test
    tr, te = order[:1437], order[1437:]
    here = os.path.dirname(os.path.abspath(__file__))
    desc = "UCI optical recognition of handwritten digits (8x8, 0..16 scaled to [0, 1]); see data/README.md"
    np.savez_compressed(os.path.join(here, "digits.npz"), x_train=x[tr].reshape(-1, 1, 8, 8), y_train=y[tr],
                        x_test=x[te].reshape(-1, 1, 8, 8), y_test=y[te], description=desc)
    np.savez_compressed(os.path.join(here, "digits_rows.npz"), x_train=x[tr].reshape(-1, 8, 8), y_train=y[tr],
                        x_test=x[te].reshape(-1, 8, 8), y_test=y[te], description=desc + " read row by row")


if __name__ == "__main__":
    main(sys.argv[1])
