"""Each Numba kernel equals its NumPy twin in kernels/reference.py, exactly, serial and parallel alike."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from witnp.array import matrix as cim
from witnp import kernels as K
from . import reference as ref


def variants(kern):
    return [("serial", kern.serial), ("parallel", kern.parallel), ("reference", getattr(ref, kern.__name__))]


def run_all(kern, make_outs, *args, tail=()):
    """Run serial, parallel and reference on fresh outputs (then the `tail` arguments); return
    [(name, result, outs)]."""
    res = []
    for name, fn in variants(kern):
        outs = make_outs()
        r = fn(*args, *outs[:-1], outs[-1], *tail) if outs else fn(*args, *tail)
        res.append((name, r, outs))
    return res


def assert_same(res):
    (_, r0, o0) = res[0]
    for name, r, o in res[1:]:
        if r is not None:
            assert np.array_equal(np.asarray(r, np.float64), np.asarray(r0, np.float64)), name
        for a, b in zip(o, o0):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(0, 7), Kn=st.integers(1, 9), sx=st.sampled_from([1.0, 3.0, 16.0, 100.0]),
       shift=st.sampled_from([0.0, 3.0]), xb=st.integers(8, 12), pn=st.booleans(), concat=st.booleans(),
       split=st.booleans(), seed=st.integers(0, 1000), nan=st.booleans())
def test_quantize_input(B, Kn, sx, shift, xb, pn, concat, split, seed, nan):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(B, Kn)) * 20).astype(np.float32)
    x[:, :1] = np.rint(x[:, :1]) / sx + np.float32(0.5 / sx)  # code ties
    x[:, 1:2] = 0  # exact zeros (relu'(0) = 0)
    if nan and x.size:
        x[0, 0] = np.nan
    Ka = 2 * Kn if (pn and concat) else Kn

    def outs():
        return [np.full((B, Ka), -7, np.float32), np.full((B, Kn), -7, np.float32), np.full((B, Kn), 9, np.int8)]
    assert_same(run_all(K.quantize_input, outs, x, sx, shift, 0, 2 ** xb - 1, pn, concat, split))


@settings(max_examples=40, deadline=None)
@given(O=st.integers(1, 6), Kn=st.integers(1, 9), sw=st.sampled_from([1.0, 7.0, 64.0, 300.0]),
       wclip=st.sampled_from([np.inf, 0.25]), seed=st.integers(0, 1000))
def test_quantize_weight(O, Kn, sw, wclip, seed):
    w = np.random.default_rng(seed).normal(size=(O, Kn)).astype(np.float32)
    assert_same(run_all(K.quantize_weight, lambda: [np.empty((O, Kn), np.float32), np.empty((O, Kn), np.uint8)],
                        w, wclip, sw))


@settings(max_examples=40, deadline=None)
@given(O=st.integers(1, 7), Kn=st.integers(1, 9), P=st.sampled_from([1024.0, 480.0, 3.0]),
       s=st.sampled_from([0.0, 10.0, 428.0]), N=st.integers(1, 9), split=st.booleans(), seed=st.integers(0, 999))
def test_quantize_bias(O, Kn, P, s, N, split, seed):
    rng = np.random.default_rng(seed)
    b = (rng.normal(size=O) * 3).astype(np.float32)
    b[0] = np.float32(0.5 * 128 / P)  # a rounding tie
    wq = rng.integers(-128, 128, (O, Kn)).astype(np.float32)
    bias_d = (rng.normal(size=O) * 2).astype(np.float32)
    assert_same(run_all(K.quantize_bias, lambda: [np.empty(O, np.float32), np.empty(O, np.uint8),
                                                  np.zeros(O, np.float32)], b, wq, P, s, bias_d, N, split))


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 6), O=st.integers(1, 7), f64=st.booleans(), div=st.sampled_from([1024.0, 480.0, 4.0]),
       mul=st.sampled_from([16.0, 5.0, 1.0]), yb=st.integers(8, 12), outdiv=st.sampled_from([1.0, 16.0]),
       neg=st.booleans(), clip8=st.booleans(), fl=st.booleans(), seed=st.integers(0, 1000))
def test_requant(B, O, f64, div, mul, yb, outdiv, neg, clip8, fl, seed):
    rng = np.random.default_rng(seed)
    dt = np.float64 if f64 else np.float32
    acc = rng.integers(-300000, 300000, (B, O)).astype(dt)
    negs = rng.integers(-300000, 1, (B, O)).astype(dt) if neg else np.empty((0, 0), dt)
    bias = (128 * rng.integers(-500, 500, O)).astype(np.float64)
    lo, hi = -2 ** (yb - 1), 2 ** (yb - 1) - 1
    lo2, hi2 = (-128, 127) if clip8 else (lo, hi)
    assert_same(run_all(K.requant, lambda: [np.empty((B, O), np.float32), np.empty((B, O), np.uint8)],
                        acc, negs, bias, div, mul, lo, hi, lo2, hi2, outdiv, tail=(fl,)))


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 7), H=st.integers(1, 4), W=st.integers(1, 9), f64=st.booleans(),
       neg=st.booleans(), fl=st.booleans(), seed=st.integers(0, 999))
def test_requant_nchw(B, C, H, W, f64, neg, fl, seed):
    """requant with y transposed to (B, C, H, W) on the way out; the mask stays (B·H·W, C)."""
    rng = np.random.default_rng(seed)
    dt = np.float64 if f64 else np.float32
    acc = rng.integers(-300000, 300000, (B * H * W, C)).astype(dt)
    negs = rng.integers(-300000, 1, acc.shape).astype(dt) if neg else np.empty((0, 0), dt)
    bias = (128 * rng.integers(-500, 500, C)).astype(np.float64)
    res = run_all(K.requant_nchw, lambda: [np.full((B, C, H, W), np.nan, np.float32),
                                          np.full((B * H * W, C), 9, np.uint8)],
                  acc, negs, bias, 2048.0, 8.0, -128, 127, -128, 127, 8.0, tail=(fl,))
    assert_same(res)
    assert not np.isnan(res[0][2][0]).any() and (res[0][2][1] <= 1).all()  # written whole


@settings(max_examples=40, deadline=None)
@given(R=st.integers(1, 40), C=st.integers(1, 9), e=st.integers(-10, 20), seed=st.integers(0, 9999))
def test_float32_bias_rounds_as_the_vendors_float64_sum(R, C, e, seed):
    """`matrix.bias_operand` hands the kernels a float32 bias; with float32 (noisy, non-integer) accumulators the
    float32 sum must equal the vendor's f32(f64(acc) + f64(bias)). div = the sum's ulp makes every last bit
    of it count in y, and the accumulators span 40 binades, so sums that cancel, tie or lose the small
    operand are all in the draw."""
    rng = np.random.default_rng(seed)
    acc = (rng.uniform(1, 2, (R, C)) * np.exp2(e + rng.integers(-30, 11, (R, C)))
           * rng.choice([-1, 1], (R, C))).astype(np.float32)
    acc[0, 0] = np.nextafter(np.float32(-1.5 * 2.0 ** e), np.float32(0))  # cancels against the bias below
    b32 = (rng.uniform(1, 2, C) * 2.0 ** e * rng.choice([-1, 1], C)).astype(np.float32)
    b32[0] = np.float32(1.5 * 2.0 ** e)
    b64 = cim.bias_operand(b32.astype(np.float64))
    assert b64.dtype == np.float32 and np.array_equal(b64, b32)
    div = 2.0 ** (e - 22)  # v = sum / div: an integer up to ~2^33 in float32, rint keeps it
    big = 2.0 ** 40
    want = [np.empty((R, C), np.float32), np.empty((R, C), np.uint8)]
    ref.requant(acc, np.empty((0, 0), np.float32), b32.astype(np.float64), div, 1.0, -big, big, -big, big, 1.0, *want,
                False)
    for kern in (K.requant.serial, K.requant.parallel):
        got = [np.empty((R, C), np.float32), np.empty((R, C), np.uint8)]
        kern(acc, np.empty((0, 0), np.float32), b32, div, 1.0, -big, big, -big, big, 1.0, *got, False)
        np.testing.assert_array_equal(got[0], want[0])
    y = np.empty((1, C, 1, R), np.float32)
    K.requant_nchw.serial(acc, np.empty((0, 0), np.float32), b32, div, 1.0, -big, big, -big, big, 1.0, y,
                          np.empty((R, C), np.uint8), False)
    np.testing.assert_array_equal(y[0, :, 0, :].T, want[0])


def test_bias_operand_keeps_float64_where_float32_would_round():
    t = np.array([128.0 * 127, 2.0 ** 24 + 1, -3.0])
    assert cim.bias_operand(t).dtype == np.float64
    assert cim.bias_operand(t[[0, 2]]).dtype == np.float32


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 6), O=st.integers(1, 7), G=st.sampled_from([1, 3, 256, 1000]), fl=st.booleans(),
       seed=st.integers(0, 999))
def test_combine_split(B, O, G, fl, seed):
    rng = np.random.default_rng(seed)
    yl = rng.integers(-128, 128, (B, O)).astype(np.float32)
    accd = (256 * rng.integers(-2000, 2000, (B, O))).astype(np.float64)
    biasd = (128 * rng.integers(-50, 50, O)).astype(np.float64)
    assert_same(run_all(K.combine_split, lambda: [np.empty((B, O), np.float32), np.empty((B, O), np.uint8)],
                        yl, accd, biasd, G, -128, 127, 16.0, tail=(fl,)))


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), C=st.integers(1, 19), H=st.integers(1, 4), W=st.integers(1, 11), pn=st.booleans(),
       unpadded=st.booleans(), pads=st.tuples(*[st.integers(0, 2)] * 4), seed=st.integers(0, 999))
def test_quantize_nhwc(B, C, H, W, pn, unpadded, pads, seed):
    """Quantization straight into channels-last codes, unpadded and/or padded, = quantize_input + transpose + pad."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(B, C, H, W)) * 20).astype(np.float32)
    x[..., :1] = 0  # relu'(0) = 0
    top, bottom, left, right = pads
    lo, hi, shift, fill = (0, 255, 0.0, 0.0) if pn else (-128, 127, 3.0, 3.0)
    e = np.empty((0, 0, 0, 0), np.float32)

    def outs():
        u = np.full((B, H, W, C), np.nan, np.float32) if unpadded else e
        p = np.full((B, H + top + bottom, W + left + right, C), np.nan, np.float32)
        return [u, u.copy() if pn else e, p, p.copy() if pn else e]

    res = []
    for name, fn in variants(K.quantize_nhwc):
        o = outs()
        m = np.full(x.shape, 9, np.int8)
        r = fn(x, 16.0, shift, lo, hi, pn, *o, top, left, fill, m)
        res.append((name, r, o + [m]))
    assert_same(res)
    *codes, m = res[0][2]
    assert not any(np.isnan(a).any() for a in codes) and (m != 9).all()  # written whole
    x[0, 0, 0, 0] = np.nan
    assert K.quantize_nhwc(x, 16.0, shift, lo, hi, pn, *outs(), top, left, fill, m) == 1


@pytest.mark.parametrize("pn", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (2, 16, 3, 8), (1, 11, 3, 5)])  # tails only, 8x8 blocks, both
def test_input_grad_nhwc(pn, shape):
    """input_grad of channels-last code gradients, dx written channels-first."""
    rng = np.random.default_rng(5)
    B, C, H, W = shape
    dpos = rng.normal(size=(B, H, W, C)).astype(np.float32)
    dneg = rng.normal(size=dpos.shape).astype(np.float32) if pn else np.empty((0, 0, 0, 0), np.float32)
    mask = rng.integers(-1 if pn else 0, 2, (B, C, H, W)).astype(np.int8)
    res = run_all(K.input_grad_nhwc, lambda: [np.full((B, C, H, W), np.nan, np.float32)], dpos, dneg, mask, 0.5)
    assert_same(res)
    dx = res[0][2][0]
    want = np.where(mask > 0, dpos.transpose(0, 3, 1, 2), 0) * np.float32(0.5)
    if pn:
        want = want - np.where(mask < 0, dneg.transpose(0, 3, 1, 2), 0) * np.float32(0.5)
    np.testing.assert_array_equal(dx, want.astype(np.float32))


@pytest.mark.parametrize("concat", [False, True])
def test_input_grad(concat):
    rng = np.random.default_rng(0)
    B, Kn = 5, 7
    dxa = rng.normal(size=(B, 2 * Kn if concat else Kn)).astype(np.float32)
    mask = rng.integers(-1, 2, (B, Kn)).astype(np.int8)
    assert_same(run_all(K.input_grad, lambda: [np.empty((B, Kn), np.float32)], dxa, mask, 16.0, concat))


@pytest.mark.parametrize("accumulate", [False, True])
def test_scale_masked(accumulate):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(4, 6)).astype(np.float32)
    mask = rng.integers(0, 2, (4, 6)).astype(np.uint8)
    start = rng.normal(size=(4, 6)).astype(np.float32)
    for name, fn in variants(K.scale_masked):  # noqa: B007
        out = start.copy()
        assert fn(src, mask, 0.37, out, accumulate) == 0
        want = (start if accumulate else 0) + np.where(mask != 0, src * np.float32(0.37), 0)
        np.testing.assert_array_equal(out, want.astype(np.float32), err_msg=name)


def test_large_inputs_take_the_parallel_twin_and_agree():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(512, 300)) * 50).astype(np.float32)
    outs = [[np.empty((512, 300), np.float32), np.empty((512, 300), np.float32), np.empty((512, 300), np.int8)]
            for _ in range(2)]
    old = K.set_parallel_threshold(1000)
    try:
        r1 = K.quantize_input(x, 4.0, 0.0, 0, 1023, False, False, True, *outs[0], n=x.size)  # the parallel twin
    finally:
        K.set_parallel_threshold(old)
    r2 = K.quantize_input.serial(x, 4.0, 0.0, 0, 1023, False, False, True, *outs[1])
    assert r1 == r2
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=50, deadline=None)
@given(B=st.integers(1, 3), g=st.integers(1, 3), cg=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7),
       kh=st.integers(1, 3), kw=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2),
       jfirst=st.booleans(), pad=st.sampled_from([0.0, 7.0]), seed=st.integers(0, 99))
def test_im2row_row2im(B, g, cg, H, W, kh, kw, s, p, d, jfirst, pad, seed):
    Ho = (H + 2 * p - d * (kh - 1) - 1) // s + 1
    Wo = (W + 2 * p - d * (kw - 1) - 1) // s + 1
    if Ho < 1 or Wo < 1:
        return
    C = g * cg
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, H, W, C)).astype(np.float32)
    geo = (kh, kw, s, s, p, p, d, d, Wo, g, jfirst)
    M, F = B * Ho * Wo, C * kh * kw
    assert_same(run_all(K.im2row, lambda: [np.full((M, F), -1, np.float32)], x, *geo, pad))
    rows = rng.integers(-9, 9, (M, F)).astype(np.float32)
    assert_same(run_all(K.row2im, lambda: [np.full((B, H, W, C), 5, np.float64)], rows, *geo))
    # adjointness: <im2row(x), r> = <x, row2im(r)> (zero padding)
    ir = K.im2row.serial(x, *geo, 0.0, np.empty((M, F), np.float32))
    back = K.row2im.serial(rows, *geo, np.empty((B, H, W, C), np.float64))
    np.testing.assert_allclose((ir.astype(np.float64) * rows).sum(), (x * back).sum(), rtol=1e-9, atol=1e-9)
