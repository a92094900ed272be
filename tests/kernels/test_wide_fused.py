"""The fused wide-plane kernels (`kernels.wide_fused`) give the bits of the unfused passes they replace."""
import numpy as np
import pytest

from witnp import kernels as K
from witnp.array.conv.ops import Geometry
from witnp.array.conv.wide import WidePlan
from .twins import assert_parallel_equals_serial

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


def _nhwc(a):  # (B, C, H, W) -> (B·H·W, C): the row kernels' layout
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, a.shape[1])


@pytest.mark.parametrize("pn,groups", [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_forward_requant_is_forward_then_requant(pn, groups):
    p = _plan(groups)
    rng = np.random.default_rng(1)
    xp, xn, _, w, wn = _codes(p, rng, pn)
    bias = 128.0 * rng.integers(-60, 60, p.O).astype(np.float64)
    args = (bias, 2048.0, 8.0, -128, 127, -128, 127, 8.0)  # v spans past the clip: both mask values occur
    y, m = p.forward_requant(xp, xn, w, wn, *args)
    shape = (p.B, p.O, p.Ho, p.Wo)
    acc = _nhwc(p.unplane(p.forward(xp, w), p.ld_o, shape))
    neg = _nhwc(p.unplane(p.forward(xn, wn), p.ld_o, shape)) if pn else np.empty((0, 0), np.float32)
    y2, m2 = np.empty(acc.shape, np.float32), np.empty(acc.shape, np.uint8)
    K.requant(acc, neg, *args, y2, m2, False)
    np.testing.assert_array_equal(_nhwc(y), y2)
    np.testing.assert_array_equal(_nhwc(m), m2)
    assert 0 < m.mean() < 1


@pytest.mark.parametrize("pn,groups,masked", [(False, 1, False), (True, 1, True), (False, 3, True), (True, 2, False)])
def test_backward_is_the_unfused_passes(pn, groups, masked):
    """wide_backward = g planes (mask, scale, sums) + input gradient through the input mask + weight
    gradient, each of them done apart; and it counts non-finite g."""
    p = _plan(groups, C=6)
    rng = np.random.default_rng(3)
    xp, xn, xmask, w, wn = _codes(p, rng, pn)
    g = rng.integers(-9, 10, (p.B, p.O, p.Ho, p.Wo)).astype(np.float32)
    ym = (rng.random(g.shape) > 0.3).astype(np.uint8) if masked else None
    dw, dwn, dx, sums, bad = p.backward(g, ym, 0.5, xp, xn, w, wn, xmask, 0.25)
    gb, sums2, _ = p.g_planes_from(g, ym, 0.5)
    np.testing.assert_array_equal(dw, p.weight_grad(gb, xp))
    np.testing.assert_array_equal(sums, sums2)
    shape = (p.B, p.C, p.H, p.W)
    parts = [p.unplane(p.input_grad(gb, w), p.ld_dx, shape)] + ([p.unplane(p.input_grad(gb, wn), p.ld_dx, shape)]
                                                                if pn else [])
    dx2 = np.empty((1, dx.size), np.float32)
    K.input_grad(np.concatenate([a.reshape(1, -1) for a in parts], axis=1), xmask.reshape(1, -1), 0.25, pn, dx2)
    np.testing.assert_array_equal(dx.reshape(1, -1), dx2)
    if pn:
        np.testing.assert_array_equal(dwn, p.weight_grad(gb, xn))
    else:
        assert dwn is None
    assert bad == 0 and (dx != 0).any() and (dx == 0).any()
    g[1, 2, -1, -1], g[0, 0, 0, 0] = np.nan, np.inf
    assert p.backward(g, ym, 0.5, xp, xn, w, wn, xmask, 0.25)[4] == 2


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
                *p.backward(g, None, 1.0, xp, xn, w, -w, mask, 0.5), p.forward(xp, w), p.weight_grad(gb, xp))

    assert_parallel_equals_serial(run)
    for k in (K.quantize_wide, K.wide_conv_rq, K.wide_backward, K.wide_conv, K.wide_dw, K.grad_to_wide):
        assert k.parallel.signatures, k.__name__  # the parallel twin did run
