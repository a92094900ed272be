"""`at_b` (weight gradients on the register tile) against NumPy: exact on integer-valued operands, across
row-chunk boundaries, tile row counts and column offsets."""
import numpy as np
import pytest

from witnp.kernels import LANES, at_b


@pytest.mark.parametrize("R", [1, 127, 128, 129, 300])
@pytest.mark.parametrize("ka", [1, 5, 12, 13, 25])
def test_at_b_exact(R, ka):
    rng = np.random.default_rng(R * 100 + ka)
    lda, a0 = ka + 3, 2  # a column block inside wider rows
    b0, nc = 1, 3 * LANES  # a block of B's rows, nc columns from b0
    A = rng.integers(-255, 256, (R, lda)).astype(np.float32)
    B = rng.integers(-127, 128, (R, b0 + nc)).astype(np.float32)
    C = np.full((ka, nc), np.nan, np.float32)
    at_b(A.ravel(), a0, lda, ka, R, B.ravel(), b0, B.shape[1], C)
    want = A[:, a0:a0 + ka].astype(np.int64).T @ B[:, b0:b0 + nc].astype(np.int64)
    np.testing.assert_array_equal(C, want.astype(np.float32))


def test_parallel_twin_equals_serial():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 9)).astype(np.float32)
    B = rng.normal(size=(200, LANES)).astype(np.float32)
    c1, c2 = (np.empty((9, LANES), np.float32) for _ in range(2))
    at_b.serial(A.ravel(), 0, 9, 9, 200, B.ravel(), 0, LANES, c1)
    at_b.parallel(A.ravel(), 0, 9, 9, 200, B.ravel(), 0, LANES, c2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(c1, A.T.astype(np.float64) @ B, rtol=1e-5, atol=1e-4)
