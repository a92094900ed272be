"""`lookup2` (the GRU's LUT reads as vector gathers) against NumPy indexing: every length around the vector
width (vector blocks, scalar tail, both), both table sizes the GRU uses, the mask multiply bit for bit."""
import numpy as np
import pytest

from witnp.kernels import LANES
from witnp.kernels.simd.gather import lookup2


@pytest.mark.parametrize("size", [256, 4096])
@pytest.mark.parametrize("n", [0, 1, LANES - 1, LANES, LANES + 3, 5 * LANES + 7])
def test_lookup2_equals_indexing(size, n):
    rng = np.random.default_rng(size + n)
    ci = rng.integers(0, size, n + 5).astype(np.int32)
    ci[:2] = [0, size - 1] if n + 5 >= 2 else ci[:2]  # both ends of the table
    lut, dlut = (rng.normal(size=size).astype(np.float32) for _ in range(2))
    m = rng.choice(np.float32([0, 1]), n + 5).astype(np.float32)
    val, der = np.full(n + 5, np.nan, np.float32), np.full(n + 5, np.nan, np.float32)
    lookup2(ci, n, lut, dlut, m, val, der)
    np.testing.assert_array_equal(val[:n], lut[ci[:n]])
    np.testing.assert_array_equal(der[:n], dlut[ci[:n]] * m[:n])
    assert np.isnan(val[n:]).all() and np.isnan(der[n:]).all()  # nothing past n written


def test_lookup2_refuses_mismatched_tables():
    z = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="power-of-two"):
        lookup2(np.zeros(4, np.int32), 4, np.zeros(256, np.float32), np.zeros(128, np.float32), z, z.copy(), z.copy())
