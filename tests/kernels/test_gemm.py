"""matmul_exact: integer-exact products on float32 BLAS, blocked beyond 2^24."""
import numpy as np
import pytest

from witnp.kernels import exact_block, matmul_exact
from .reference import matmul_exact as matmul_int


@pytest.mark.parametrize("K, amax", [(7, 255), (514, 255), (515, 255), (3000, 4095), (40, 4095)])
def test_matmul_exact_equals_int64(K, amax):
    rng = np.random.default_rng(K)
    a = rng.integers(-amax, amax + 1, (9, K)).astype(np.float32)
    a[:, : K // 2] = amax  # worst case: every partial sum near the bound
    b = rng.integers(-128, 128, (5, K)).astype(np.float32)
    b[:, : K // 2] = -128
    got = matmul_exact(a, b.T, amax, 128)
    want = matmul_int(a, b.T)
    assert np.array_equal(got.astype(np.int64), want)
    if K > exact_block(amax, 128):
        assert got.dtype == np.float64  # blocked and summed exactly
    else:
        assert got.dtype == np.float32


def test_unblocked_float32_would_be_wrong_here():
    """The blocking is needed: one sgemm over 3000 terms of 4095·128 loses integers."""
    a = np.full((1, 3000), 4095, np.float32)
    b = np.full((3000, 1), 127, np.float32)
    a[0, ::3] = 4093
    want = matmul_int(a, b)
    assert not np.array_equal((a @ b).astype(np.int64), want)
    assert np.array_equal(matmul_exact(a, b, 4095, 128).astype(np.int64), want)
