"""NCHW <-> NHWC layout kernels (with fused padding) against NumPy transposes; serial and parallel twins."""
import numpy as np
import pytest

from witnp import kernels as K
from witnp.conv_ops import to_nchw, to_nhwc


@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("pad", [(0, 0), (1, 2), (3, 0)])
def test_nchw_to_nhwc_with_padding(twin, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    ph, pw = pad
    want = np.full((2, 5 + 2 * ph, 4 + 2 * pw, 3), 7.0, np.float32)
    want[:, ph:ph + 5, pw:pw + 4] = x.transpose(0, 2, 3, 1)
    out = np.empty(want.shape, np.float32)
    getattr(K.nchw_to_nhwc, twin)(x, ph, pw, 7.0, out)
    np.testing.assert_array_equal(out, want)
    if twin == "serial":
        np.testing.assert_array_equal(to_nhwc(x, pad, 7.0), want)


@pytest.mark.parametrize("twin", ["serial", "parallel"])
def test_nhwc_to_nchw(twin):
    x = np.random.default_rng(1).normal(size=(2, 5, 4, 3)).astype(np.float32)
    out = np.empty((2, 3, 5, 4), np.float32)
    getattr(K.nhwc_to_nchw, twin)(x, out)
    np.testing.assert_array_equal(out, x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(to_nchw(x), out)
    np.testing.assert_array_equal(to_nchw(to_nhwc(out)), out)
