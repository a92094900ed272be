"""Stride-1 convolutions on wide channels-first planes (`witnp.array.conv.wide`, `kernels/conv/wide.py`) against NumPy sums.

Integer-valued operands make each comparison exact (every partial sum is an integer below 2^24)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from witnp.array.conv.ops import Geometry
from witnp.array.conv.wide import WidePlan, supports
from witnp.kernels.simd.dot_tile import DC, DR
from witnp.kernels.simd.tile import LANES
from .twins import assert_parallel_equals_serial


def _ref(x, w, g, geo):
    """(y, dx, dW) of a stride-1 conv in float64 loops over taps: y = conv(x, w), dx and dW of <y, g>."""
    B, C, H, W = x.shape
    O, cg, kh, kw = w.shape
    og = O // geo.groups
    Ho, Wo = geo.conv_out(H, W)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (geo.ph, geo.ph), (geo.pw, geo.pw)))
    y = np.zeros((B, O, Ho, Wo))
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for o in range(O):
        cs = slice(o // og * cg, (o // og + 1) * cg)
        for i in range(kh):
            for j in range(kw):
                win = (slice(None), cs, slice(i * geo.dh, i * geo.dh + Ho), slice(j * geo.dw, j * geo.dw + Wo))
                y[:, o] += np.einsum("bchw,c->bhw", xp[win], w[o, :, i, j])
                dxp[win] += w[o, :, i, j][None, :, None, None] * g[:, o][:, None]
                dw[o, :, i, j] = np.einsum("bchw,bhw->c", xp[win], g[:, o])
    return y, dxp[:, :, geo.ph:geo.ph + H, geo.pw:geo.pw + W], dw


@st.composite
def cases(draw):
    G = draw(st.sampled_from([1, 1, 2, 3]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 4)), draw(st.integers(0, 3)))  # padding past the kernel's reach too
    geo = Geometry(k[0], k[1], 1, 1, p[0], p[1], d[0], d[1], groups=G)
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 2 * LANES + 5))
    Ho, Wo = geo.conv_out(H, W)
    if Ho < 1 or Wo < 1:
        H, W = H + d[0] * k[0], W + d[1] * k[1]
    return geo, draw(st.integers(1, 3)), G * draw(st.integers(1, 5)), G * draw(st.integers(1, DR + 3)), H, W, \
        draw(st.integers(0, 99))


@settings(deadline=None, max_examples=40)
@given(cases())
def test_forward_and_gradients_exact(case):
    geo, B, C, O, H, W, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-50, 51, (B, C, H, W)).astype(np.float32)
    w = rng.integers(-50, 51, (O, C // geo.groups, geo.kh, geo.kw)).astype(np.float32)
    Ho, Wo = geo.conv_out(H, W)
    g = rng.integers(-5, 6, (B, O, Ho, Wo)).astype(np.float32)
    p = WidePlan(geo, B, C, H, W, O)
    xb = p.x_planes(x)
    gb, sums, bad = p.g_planes_from(g, None, 1.0)
    y = p.unplane(p.forward(xb, w), p.ld_o, (B, O, Ho, Wo))
    dx = p.unplane(p.input_grad(gb, w), p.ld_dx, (B, C, H, W))
    dw = p.weight_grad(gb, xb)
    ry, rdx, rdw = _ref(x, w, g, geo)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_array_equal(dw, rdw)
    np.testing.assert_array_equal(sums, g.sum(axis=(2, 3)))
    assert bad == 0


def test_padding_fill_and_bias():
    """The padding holds `fill` (a Shift input's code of zero), and from_wide adds a per-channel bias."""
    geo = Geometry(3, 3, 1, 1, 1, 2)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 9, (2, 3, 5, 6)).astype(np.float32)
    w = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.float32)
    p = WidePlan(geo, 2, 3, 5, 6, 4)
    b = np.arange(4, dtype=np.float32)
    y = p.unplane(p.forward(p.x_planes(x, 7.0), w), p.ld_o, (2, 4, 5, 8), bias=b)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)), constant_values=7.0)
    ry, _, _ = _ref(xp, w, np.zeros((2, 4, 5, 8), np.float32), Geometry(3, 3))
    np.testing.assert_array_equal(y, ry + b[:, None, None])


def test_gradient_mask_scale_and_non_finite_count():
    geo = Geometry(3, 3, 1, 1, 1, 1)
    rng = np.random.default_rng(2)
    g = rng.normal(size=(2, 4, 5, 7)).astype(np.float32)
    mask = (rng.random(g.shape) > 0.3).astype(np.uint8)
    p = WidePlan(geo, 2, 3, 5, 7, 4)
    gb, sums, bad = p.g_planes_from(g, mask, 0.5)
    planes = gb[:p.g_planes * p.ld_g].reshape(2, p.ogp, p.ld_g)
    want = np.where(mask != 0, g * np.float32(0.5), 0)
    full = np.zeros((2, p.ogp, p.ld_g), np.float32)  # zero outside the image, in the padding planes too
    full[:, :4, :(p.ah + 5) * p.S].reshape(2, 4, p.ah + 5, p.S)[:, :, p.ah:, p.aw:p.aw + 7] = want
    np.testing.assert_array_equal(planes, full)
    np.testing.assert_allclose(sums, want.sum(axis=(2, 3)), rtol=1e-6, atol=1e-5)
    assert bad == 0
    g[1, 2, 3, 4], g[0, 0, 0, 0] = np.nan, np.inf
    assert p.g_planes_from(g, mask, 0.5)[2] == 2


def test_parallel_twins_equal_serial():
    geo = Geometry(3, 3, 1, 1, 1, 1, groups=2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4, 6, 9)).astype(np.float32)
    w = rng.normal(size=(6, 2, 3, 3)).astype(np.float32)
    g = rng.normal(size=(3, 6, 6, 9)).astype(np.float32)
    p = WidePlan(geo, 3, 4, 6, 9, 6)

    def run():
        xb = p.x_planes(x)
        gb, sums, _ = p.g_planes_from(g, None, 1.0)
        return p.forward(xb, w), p.input_grad(gb, w), p.weight_grad(gb, xb), sums

    assert_parallel_equals_serial(run)


def test_only_stride_one():
    assert supports(Geometry(3, 3, 1, 1)) and not supports(Geometry(3, 3, 2, 1))
    with pytest.raises(ValueError, match="stride"):
        WidePlan(Geometry(3, 3, 1, 2), 1, 1, 5, 5, 1)


def test_dot_tile_sizes_fit_the_registers():
    assert (DR, DC) == ((4, 6) if LANES == 16 else (2, 4))
