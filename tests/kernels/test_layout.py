"""NCHW <-> NHWC layout kernels (with fused padding) against NumPy transposes; serial and parallel twins."""
import numpy as np
import pytest

from witnp import kernels as K
from witnp.array.conv.ops import to_nchw, to_nhwc


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


@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("shape", [(2, 8, 3, 8), (2, 19, 4, 21), (1, 5, 2, 3), (2, 32, 2, 5)])
@pytest.mark.parametrize("pad", [(0, 0), (1, 2)])
def test_grad_to_nhwc_masks_scales_and_sums(twin, shape, pad):
    """The fused output-gradient pass equals transpose, masked scale, zero padding and per-row sums done
    apart; it counts non-finite values."""
    B, C, H, W = shape
    ph, pw = pad
    rng = np.random.default_rng(C + W)
    g = rng.normal(size=shape).astype(np.float32)
    mask = (rng.random((B * H * W, C)) > 0.3).astype(np.uint8)
    out = np.full((B, H + 2 * ph, W + 2 * pw, C), np.nan, np.float32)
    rows = np.full((B * H, C), np.nan, np.float32)
    assert getattr(K.grad_to_nhwc, twin)(g, mask, 0.25, out, rows, ph, pw) == 0
    want = np.where(mask != 0, g.transpose(0, 2, 3, 1).reshape(-1, C) * np.float32(0.25), 0).astype(np.float32)
    full = np.zeros_like(out)
    full[:, ph:ph + H, pw:pw + W] = want.reshape(B, H, W, C)
    np.testing.assert_array_equal(out, full)
    sums = np.zeros((B * H, C), np.float32)
    for w in range(W):  # in pixel order, as the kernel adds
        sums += want.reshape(B * H, W, C)[:, w]
    np.testing.assert_array_equal(rows, sums)
    g[0, 0, 0, 0], g[-1, -1, -1, -1] = np.nan, -np.inf
    assert getattr(K.grad_to_nhwc, twin)(g, mask, 0.25, out, rows, ph, pw) == 2


@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 3, 1)])
def test_pad_nhwc(twin, pads):
    top, bottom, left, right = pads
    x = np.random.default_rng(sum(pads)).normal(size=(2, 5, 7, 3)).astype(np.float32)
    want = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=4.0)
    out = np.full(want.shape, np.nan, np.float32)
    getattr(K.pad_nhwc, twin)(x, top, left, 4.0, out)
    np.testing.assert_array_equal(out, want)
