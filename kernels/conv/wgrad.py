"""Weight gradients as Aᵀ·B over many rows, on the register tile of `tile`.

A weight gradient sums, over every (batch, step) row r, the outer product of an input row and an output
gradient row: C[i, o] = Σ_r A[r, i]·B[r, o]. Long in r (thousands) and short in i and o (tens to hundreds),
this shape ran at about 57 GFLOP/s in OpenBLAS sgemm here (the GRU's 256 x 3200 x 192 product), while the
tile reaches about 100: A's entries are broadcast down the tile rows (one cache line per 12 of them) and B
is read as vectors. Rows go in chunks so that each chunk of A and B stays in L2 while every tile passes over
it; chunk partial sums add in float32, like a blocked sgemm's.
"""
import numpy as np
from numba import prange

from .._jit import kernel
from ..simd.tile import LANES, rows_fma

__all__ = ["at_b"]

_CHUNK = 128  # rows per pass: 128 rows of a 192-column A and a 256-column B are 224 KB


@kernel(raw=True)
def at_b(A, a0, lda, ka, R, Bm, b0, ldb, C):
    """C (ka, nc) = Σ_{r < R} A[a0 + r·lda + i] · Bm[b0 + r·ldb + o], for i < ka and o < nc.

    A, Bm: flat float32 views; C (ka, nc) float32, nc a multiple of LANES. Every row of Bm must have nc
    readable columns from b0 (columns past the caller's block land in C's padding columns only)."""
    nc = C.shape[1]
    Cf = C.reshape(C.size)
    nb = (nc + 2 * LANES - 1) // (2 * LANES)
    off0 = np.zeros(1, np.int64)  # a local table, not the global _OFF0 (read-only: another rows_fma type)
    for r0 in range(0, R, _CHUNK):
        nr = min(_CHUNK, R - r0)
        for i in prange(nb):  # column blocks of C are independent: the parallel twin splits them
            cb = i * 2 * LANES
            rows_fma(ka, min(2 * LANES, nc - cb), A, a0 + r0 * lda, np.int64(1), (off0, np.int64(1), lda, nr), Bm,
                     b0 + r0 * ldb + cb, ldb, Cf, cb, nc, r0 > 0)
    return C
