"""The fused wide-plane kernels (`kernels.wide_fused`) give the bits of the unfused passes they replace."""
import numpy as np
import pytest

from witnp import kernels as K
from witnp.conv_ops import Geometry
from witnp.conv_wide import WidePlan

E = np.empty(0, np.float32)


def _plan(groups=1, B=2, C=4, H=5, W=19, O=6, geo=None):
    geo = geo or Geometry(3, 2, 1, 1, 1, 2, 2, 1, groups=groups)
    return WidePlan(geo, B, C, H, W, O)


@pytest.mark.parametrize("mode", ["FALSE", "Shift", "PN"])
def test_quantize_wide_is_quantize_input_then_to_wide(mode):
    p = _plan()
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(p.B, p.C, p.H, p.W)) * 9).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # relu'(0) = 0 in the PN mask
    pn = mode == "PN"
    shift, lo, hi, fill = {"FALSE": (0.0, -128, 127, 0.0), "Shift": (7.0, 0, 255, 7.0), "PN": (0.0, 0, 255, 0.0)}[mode]
    xp, xn, mask, bad = p.quantized_planes(x, 16.0, shift, lo, hi, pn, fill)
    n = x.size
    xa = np.empty((1, 2 * n if pn else n), np.float32)
    m2 = np.empty((1, n), np.int8)
    K.quantize_input(x.reshape(1, n), 16.0, shift, lo, hi, pn, pn, False, xa, np.empty((0, 0), np.float32), m2)
    np.testing.assert_array_equal(xp, p.x_planes(xa[0, :n].reshape(x.shape), fill))
    np.testing.assert_array_equal(mask.reshape(1, n), m2)
    if pn:
        np.testing.assert_array_equal(xn, p.x_planes(xa[0, n:].reshape(x.shape), 0.0))
    else:
        assert xn is None
    assert bad == 0
    x[1, 2, 3, 4], x[0, 1, 0, 0] = np.nan, -np.inf
    assert p.quantized_planes(x, 16.0, shift, lo, hi, pn, fill)[3] == 2


def _codes(p, rng, pn):
    x = rng.integers(-200, 200, (p.B, p.C, p.H, p.W)).astype(np.float32) / 16
    xp, xn, mask, _ = p.quantized_planes(x, 16.0, 0.0, 0 if pn else -128, 255 if pn else 127, pn, 0.0)
    w = rng.integers(-128, 128, (p.O, p.cg, p.geo.kh, p.geo.kw)).astype(np.float32)
    wn = rng.integers(-128, 128, w.shape).astype(np.float32) if pn else None
    return xp, xn, mask, w, wn


@pytest.mark.parametrize("pn,groups", [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_forward_requant_is_forward_then_requant_wide(pn, groups):
    p = _plan(groups)
    rng = np.random.default_rng(1)
    xp, xn, _, w, wn = _codes(p, rng, pn)
    bias = 128.0 * rng.integers(-60, 60, p.O).astype(np.float64)
    args = (bias, 2048.0, 8.0, -128, 127, -128, 127, 8.0)  # v spans past the clip: both mask values occur
    y, m = p.forward_requant(xp, xn, w, wn, *args)
    y2, m2 = np.empty_like(y), np.empty_like(m)
    K.requant_wide(p.forward(xp, w), p.forward(xn, wn) if pn else E, 0, p.ld_o, p.S, *args, y2, m2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(m, m2)
    assert 0 < m.mean() < 1


def test_strided_output_and_empty_tap_table():
    """A ConvTranspose2d phase: every 2nd row and column of y from (1, 0), the rest untouched; a phase no tap
    reaches gives the bias alone."""
    p = _plan(B=1, C=2, H=4, W=5, O=3, geo=Geometry(3, 3, 1, 1, 1, 1))
    rng = np.random.default_rng(2)
    xp, _, _, w, _ = _codes(p, rng, False)
    bias = 128.0 * np.arange(1, 4, dtype=np.float64)
    y = np.full((1, 3, 9, 10), np.nan, np.float32)
    m = np.full(y.shape, 7, np.uint8)
    cg, og, T = p.cg, p.og, p.T
    call = lambda boff, aoff, T, oy0, ox0: K.wide_conv_rq(  # noqa: E731
        xp, E, p.C * p.ld_x, p.ld_x, cg * p.ld_x, boff, w.reshape(-1), E, og * cg * T, cg * p.T, aoff, T, cg, 1, og,
        p.ld_o, p.ld_o, p.S, bias, 1.0, 1.0, -1e6, 1e6, -1e6, 1e6, 1.0, oy0, ox0, 2, 2, p.Ho, p.Wo, y, m)
    call(p.boff_f, p.aoff, T, 1, 0)
    full = p.unplane(p.forward(xp, w), p.ld_o, (1, 3, p.Ho, p.Wo), bias=bias.astype(np.float32))
    np.testing.assert_array_equal(y[:, :, 1::2, 0::2], full)
    assert np.isnan(y[:, :, 0::2]).all() and np.isnan(y[:, :, :, 1::2]).all() and (m[:, :, 0::2] == 7).all()
    none = np.empty(0, np.int64)
    call(none, none, 0, 0, 1)
    np.testing.assert_array_equal(y[:, :, 0:8:2, 1::2], np.broadcast_to(bias[None, :, None, None], (1, 3, 4, 5)))


@pytest.mark.parametrize("pn,groups", [(False, 1), (True, 1), (True, 3)])
def test_input_grad_masked_is_input_grad_then_input_grad_wide(pn, groups):
    p = _plan(groups, C=6)
    rng = np.random.default_rng(3)
    _, _, mask, w, wn = _codes(p, rng, pn)
    g = rng.integers(-9, 10, (p.B, p.O, p.Ho, p.Wo)).astype(np.float32)
    gb, _, _ = p.g_planes_from(g, None, 1.0)
    dx = p.input_grad_masked(gb, w, wn, mask, 0.25)
    dx2 = np.empty_like(dx)
    K.input_grad_wide(p.input_grad(gb, w), p.input_grad(gb, wn) if pn else E, 0, p.ld_dx, p.S, mask, 0.25, dx2)
    np.testing.assert_array_equal(dx, dx2)
    assert (dx != 0).any() and (dx == 0).any()


def test_parallel_twins_equal_serial():
    p = _plan(2)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(p.B, p.C, p.H, p.W)).astype(np.float32)
    w = rng.normal(size=(p.O, p.cg, p.geo.kh, p.geo.kw)).astype(np.float32)
    g = rng.normal(size=(p.B, p.O, p.Ho, p.Wo)).astype(np.float32)
    bias = rng.normal(size=p.O)

    def run():
        xp, xn, mask, _ = p.quantized_planes(x, 16.0, 0.0, 0, 255, True, 0.0)
        gb, _, _ = p.g_planes_from(g, None, 1.0)
        return (xp, xn, mask, *p.forward_requant(xp, xn, w, -w, bias, 64.0, 1.0, -128, 127, -128, 127, 1.0),
                p.input_grad_masked(gb, w, -w, mask, 0.5), p.forward(xp, w), p.weight_grad(gb, xp))

    serial = run()
    old = K.set_parallel_threshold(0)
    try:
        parallel = run()
    finally:
        K.set_parallel_threshold(old)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    for k in (K.quantize_wide, K.wide_conv_rq, K.wide_conv_ig, K.wide_conv, K.wide_dw):
        assert k.parallel.signatures, k.__name__  # the parallel twin did run
