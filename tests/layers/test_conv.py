"""Conv2d / ConvTranspose2d: float mode against naive references, gradients against finite differences,
adjointness, the quantized modes against a transcription of chip.md §4, and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import witnp as wn

from ..conftest import central_diff
from .spec_conv import conv2d_ref, conv_transpose2d_ref, spec_qconv, spec_qconv2d_grads

pairs = st.tuples


@st.composite
def conv_geometry(draw, transposed=False):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    ci, co = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    geo = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g)
    if transposed:
        oph = draw(st.integers(0, max(sh, dh) - 1))
        opw = draw(st.integers(0, max(sw, dw) - 1))
        geo["output_padding"] = (oph, opw)
        if (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1 < 1 or (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1 < 1:
            ph = pw = 0
            geo["padding"] = (0, 0)
    else:
        H = max(H, dh * (kh - 1) + 1 - 2 * ph)
        W = max(W, dw * (kw - 1) + 1 - 2 * pw)
    return dict(ci=ci, co=co, k=(kh, kw), B=draw(st.integers(1, 3)), H=H, W=W, geo=geo,
                seed=draw(st.integers(0, 10 ** 6)))


def build(c, transposed, cfg=None, bias=True):
    cls = wn.ConvTranspose2d if transposed else wn.Conv2d
    return cls(c["ci"], c["co"], c["k"], bias=bias, config=cfg or wn.LayerConfig(),
               rng=np.random.default_rng(c["seed"]), **c["geo"])


@settings(max_examples=60, deadline=None)
@given(conv_geometry())
def test_conv2d_float_matches_reference(c):
    layer = build(c, False)
    x = np.random.default_rng(c["seed"]).normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    y = layer(x)
    geo = {k: v for k, v in c["geo"].items()}
    want = conv2d_ref(x, layer.params["weight"], layer.params["bias"], **geo)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(conv_geometry(transposed=True))
def test_conv_transpose2d_float_matches_reference(c):
    layer = build(c, True)
    x = np.random.default_rng(c["seed"]).normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    y = layer(x)
    want = conv_transpose2d_ref(x, layer.params["weight"], layer.params["bias"], **c["geo"])
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(conv_geometry())
def test_adjoint_conv_and_conv_transpose(c):
    """<conv(x), y> = <x, conv_transpose(y)> with the same weight (no bias, no output padding needed)."""
    conv = build(c, False, bias=False)
    geo = dict(c["geo"])
    convT = wn.ConvTranspose2d(c["co"], c["ci"], c["k"], bias=False, **geo)
    convT.params["weight"][...] = conv.params["weight"]
    rng = np.random.default_rng(c["seed"] + 1)
    x = rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    cx = conv(x)
    yv = rng.normal(size=cx.shape).astype(np.float32)
    # the transpose of an (H, W) -> (Ho, Wo) conv may need output padding to land back on (H, W)
    Ho, Wo = convT.geo.convT_out(*cx.shape[2:])
    (sh, sw), (dh, dw) = geo["stride"], geo["dilation"]
    oph, opw = c["H"] - Ho, c["W"] - Wo
    if not (0 <= oph < max(sh, dh) and 0 <= opw < max(sw, dw)):
        return
    geo["output_padding"] = (oph, opw)
    convT = wn.ConvTranspose2d(c["co"], c["ci"], c["k"], bias=False, **geo)
    convT.params["weight"][...] = conv.params["weight"]
    ty = convT(yv)
    assert ty.shape == x.shape
    lhs = float((cx.astype(np.float64) * yv).sum())
    rhs = float((x.astype(np.float64) * ty).sum())
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


@pytest.mark.parametrize("transposed", [False, True])
def test_float_gradients_match_central_differences(transposed):
    c = dict(ci=4, co=6, k=(3, 2), B=2, H=5, W=4, seed=3,
             geo=dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2))
    if transposed:
        c["geo"]["output_padding"] = (1, 0)
    layer = build(c, transposed)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    y, ctx = layer.forward(x)
    gy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(gy, ctx)
    ref = conv_transpose2d_ref if transposed else conv2d_ref
    x64 = x.astype(np.float64)
    w64 = layer.params["weight"].astype(np.float64)
    b64 = layer.params["bias"].astype(np.float64)
    loss = lambda: float((ref(x64, w64, b64, **c["geo"]) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["weight"], central_diff(loss, w64, 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["bias"], central_diff(loss, b64, 1e-3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ci, groups, kind", [(4, 2, "wide"), (1, 1, "wide"), (18, 2, "float")])
def test_float_stride1_conv2d_gradients_on_either_layout(ci, groups, kind):
    """A stride-1 float Conv2d with <= 8 input channels per group runs on the wide planes (the quantized
    layer's kernels), one with more on the channels-last path: both against central differences."""
    c = dict(ci=ci, co=2 * groups, k=(3, 2), B=2, H=5, W=6, seed=5,
             geo=dict(stride=(1, 1), padding=(1, 2), dilation=(1, 2), groups=groups))
    layer = build(c, False)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    y, ctx = layer.forward(x)
    assert ctx.run["kind"] == kind
    x64, w64 = x.astype(np.float64), layer.params["weight"].astype(np.float64)
    b64 = layer.params["bias"].astype(np.float64)
    np.testing.assert_allclose(y, conv2d_ref(x64, w64, b64, **c["geo"]), rtol=1e-5, atol=1e-5)
    gy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(gy, ctx)
    loss = lambda: float((conv2d_ref(x64, w64, b64, **c["geo"]) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["weight"], central_diff(loss, w64, 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["bias"], central_diff(loss, b64, 1e-3), rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(conv_geometry())
def test_float_conv2d_wide_and_channels_last_agree(c):
    """Every stride-1 float Conv2d the wide planes take (<= 8 input channels per group): output and all three
    gradients equal the channels-last path's up to float32 rounding (sums in another order)."""
    import witnp.layers.conv as conv_mod
    c["geo"]["stride"] = (1, 1)
    layer = build(c, False)
    rng = np.random.default_rng(c["seed"])
    x = rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])).astype(np.float32)
    got = {}
    for limit in (conv_mod._WIDE_FLOAT_MAX_CG, 0):  # 0: every layer channels-last
        old, conv_mod._WIDE_FLOAT_MAX_CG = conv_mod._WIDE_FLOAT_MAX_CG, limit
        try:
            layer.zero_grad()
            y, ctx = layer.forward(x)
            dx = layer.backward(np.ones_like(y) + y, ctx)
            got[limit] = (ctx.run["kind"], y, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy())
        finally:
            conv_mod._WIDE_FLOAT_MAX_CG = old
    (kw, *wide), (kc, *last) = got.values()
    assert (kw, kc) == ("wide", "float")
    for a, b in zip(wide, last):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@settings(max_examples=60, deadline=None)
@given(c=conv_geometry(), neg=st.sampled_from(["FALSE", "PN", "Shift"]), xb=st.integers(8, 12),
       yb=st.integers(8, 12), scales=st.sampled_from([(16, 64, 8), (8, 256, 16), (12, 40, 5), (64, 8, 32)]),
       N=st.integers(1, 8), shift_num=st.sampled_from([0.5, 1.671]))
def test_quantized_conv2d_matches_spec(c, neg, xb, yb, scales, N, shift_num):
    sx, sw, sy = scales
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=sx, scale_weight=sw, scale_y=sy,
                         x_quant_bits=xb, y_quant_bits=yb, bias_row_N=N, handle_neg_in=neg, shift_num=shift_num)
    layer = build(c, False, cfg)
    x = (np.random.default_rng(c["seed"]).normal(size=(c["B"], c["ci"], c["H"], c["W"])) * 3).astype(np.float32)
    want = spec_qconv(x, layer.params["weight"], layer.params["bias"], sx=sx, sw=sw, sy=sy, xb=xb, yb=yb, N=N,
                      neg=neg, shift_num=shift_num, geo=c["geo"])
    np.testing.assert_array_equal(layer(x), want)


@settings(max_examples=40, deadline=None)
@given(c=conv_geometry(transposed=True), neg=st.sampled_from(["FALSE", "PN"]), xb=st.integers(8, 12),
       yb=st.integers(8, 12), scales=st.sampled_from([(16, 64, 8), (12, 40, 5)]), N=st.integers(1, 8))
def test_quantized_conv_transpose2d_matches_spec(c, neg, xb, yb, scales, N):
    sx, sw, sy = scales
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=sx, scale_weight=sw, scale_y=sy,
                         x_quant_bits=xb, y_quant_bits=yb, bias_row_N=N, handle_neg_in=neg)
    layer = build(c, True, cfg)
    x = (np.random.default_rng(c["seed"]).normal(size=(c["B"], c["ci"], c["H"], c["W"])) * 3).astype(np.float32)
    want = spec_qconv(x, layer.params["weight"], layer.params["bias"], sx=sx, sw=sw, sy=sy, xb=xb, yb=yb, N=N,
                      neg=neg, transposed=True, geo=c["geo"])
    np.testing.assert_array_equal(layer(x), want)


@settings(max_examples=30, deadline=None)
@given(c=conv_geometry(), neg=st.sampled_from(["FALSE", "PN", "Shift"]), xb=st.sampled_from([8, 10]),
       yb=st.sampled_from([8, 10]), N=st.sampled_from([1, 8]), shift_num=st.sampled_from([0.25, 1.0, 3.0]),
       scales=st.sampled_from([(16, 32, 16), (64, 128, 8), (8, 16, 64)]))
def test_quantized_conv2d_gradients_equal_the_spec_formula_by_formula(c, neg, xb, yb, N, shift_num, scales):
    """dx, dW and db of the quantized Conv2d against chip.md §7 transcribed term by term (spec_conv), to float
    order: the Shift term of the weight gradient, the bias clamp, PN's two branches and clips included."""
    sx, sw, sy = scales
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=sx, scale_weight=sw, scale_y=sy,
                         x_quant_bits=xb, y_quant_bits=yb, handle_neg_in=neg, bias_row_N=N, shift_num=shift_num)
    rng = np.random.default_rng(c["seed"])
    geo = c["geo"]
    layer = wn.Conv2d(c["ci"], c["co"], c["k"], config=cfg, **geo)
    layer.params["bias"][...] = rng.normal(size=c["co"]).astype(np.float32) * 4  # some bias codes clamp at N = 1
    x = (rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])) * 0.8).astype(np.float32)
    y, ctx = layer.forward(x, train=True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(dy, ctx)
    want_dx, want_dw, want_db = spec_qconv2d_grads(x, layer.params["weight"], layer.params["bias"], dy, sx=sx, sw=sw,
                                                   sy=sy, xb=xb, yb=yb, N=N, neg=neg, shift_num=shift_num, geo=geo)
    scale = max(1.0, float(np.abs(want_dw).max()))
    np.testing.assert_allclose(layer.grads["weight"], want_dw, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(layer.grads["bias"], want_db, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want_db).max()))
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want_dx).max())))


def test_quantized_straight_through_pn_int8_clip_after_rounding():
    """Conv2d PN: R(clip(v, Y(yb))) then clamp to int8: a value rounding to 127 still passes gradient."""
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=1, scale_weight=1, scale_y=1,
                         y_quant_bits=10, handle_neg_in="PN")
    conv = wn.Conv2d(1, 1, 1, bias=False, config=cfg)
    conv.params["weight"][...] = 1.0
    x = np.array([[[[127.3, 127.6, 200.0]]]], np.float32)
    y, ctx = conv.forward(x)
    np.testing.assert_array_equal(y, [[[[127, 127, 127]]]])
    dx = conv.backward(np.ones_like(y), ctx)
    np.testing.assert_array_equal(dx, [[[[1, 0, 0]]]])


@pytest.mark.parametrize("transposed", [False, True])
def test_pn_negative_branch_uses_wneg_not_minus_wq(transposed):
    """W·sw = -200: Wq = -128 but Wneg = R(clip(200, -128, 127)) = 127, so a negative input sees 127, not 128."""
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=1, scale_weight=1, scale_y=1,
                         y_quant_bits=12, handle_neg_in="PN")
    cls = wn.ConvTranspose2d if transposed else wn.Conv2d
    conv = cls(1, 1, 1, bias=False, config=cfg)
    conv.params["weight"][...] = -200.0
    y = conv(np.array([[[[1.0, -1.0]]]], np.float32))
    want = [-128, 127]  # for Conv2d the final int8 clip leaves both in range
    np.testing.assert_array_equal(y[0, 0, 0], want)


def test_unbatched_input_and_vendor_alias():
    conv = wn.WitinConv2d(2, 3, 3, padding=1, layer_config=wn.LayerConfig())
    x = np.ones((2, 5, 5), np.float32)
    y, ctx = conv.forward(x)
    assert y.shape == (3, 5, 5)
    assert conv.backward(np.ones_like(y), ctx).shape == x.shape
    assert isinstance(wn.WitinConvTranspose2d(2, 3, 2), wn.ConvTranspose2d)


class TestBadInput:
    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match=r"Conv2d: x has 2 channels \(shape \(1, 2, 5, 5\)\); expected "
                                             r"in_channels=3"):
            wn.Conv2d(3, 4, 3)(np.ones((1, 2, 5, 5), np.float32))

    def test_kernel_larger_than_padded_input(self):
        with pytest.raises(ValueError, match=r"Conv2d: kernel \(5, 5\) .* larger than the padded input \(4, 4\)"):
            wn.Conv2d(1, 1, 5, padding=1)(np.ones((1, 1, 2, 2), np.float32))

    def test_output_padding_not_below_stride_or_dilation(self):
        with pytest.raises(ValueError, match=r"ConvTranspose2d: output_padding=2 must be smaller than stride or "
                                             r"dilation"):
            wn.ConvTranspose2d(1, 1, 3, stride=2, output_padding=2)

    @pytest.mark.parametrize("cls", [wn.Conv2d, wn.ConvTranspose2d])
    def test_groups_must_divide_channels(self, cls):
        with pytest.raises(ValueError, match=r"groups=2 must divide in_channels=3 and out_channels=4"):
            cls(3, 4, 3, groups=2)

    def test_rank_and_dtype(self):
        with pytest.raises(ValueError, match=r"Conv2d: x has shape \(5, 5\); expected \(B, 1, H, W\)"):
            wn.Conv2d(1, 1, 3)(np.ones((5, 5), np.float32))
        with pytest.raises(TypeError, match="Conv2d: x has dtype int32"):
            wn.Conv2d(1, 1, 3)(np.ones((1, 1, 5, 5), np.int32))

    def test_bad_geometry_arguments(self):
        with pytest.raises(ValueError, match=r"Conv2d: kernel_size=\(3, 0\); expected an integer >= 1"):
            wn.Conv2d(1, 1, (3, 0))
        with pytest.raises(ValueError, match=r"Conv2d: padding=-1; expected an integer >= 0"):
            wn.Conv2d(1, 1, 3, padding=-1)

    def test_shift_refused_for_conv_transpose(self):
        cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="Shift")
        with pytest.raises(ValueError, match="ConvTranspose2d: handle_neg_in='Shift' is not supported"):
            wn.ConvTranspose2d(2, 2, 3, config=cfg)

    def test_to_linear_with_groups_refused(self):
        cfg = wn.LayerConfig(use_quantization=True, to_linear=True)
        with pytest.raises(ValueError, match="to_linear=True is supported for Conv2d with groups=1 only"):
            wn.Conv2d(2, 2, 3, groups=2, config=cfg)

    def test_nan_input_quantized(self):
        cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False)
        x = np.ones((1, 1, 4, 4), np.float32)
        x[0, 0, 1, 1] = np.nan
        with pytest.raises(ValueError, match="Conv2d: x contains NaN or inf"):
            wn.Conv2d(1, 1, 3, config=cfg)(x)

    @pytest.mark.parametrize("cls", [wn.Conv2d, wn.ConvTranspose2d])
    def test_nan_gradient_quantized(self, cls):
        """The quantized backward counts non-finite dy in its layout pass (the layer skips its own check)."""
        cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False)
        layer = cls(2, 3, 3, config=cfg)
        y, ctx = layer.forward(np.ones((2, 2, 5, 5), np.float32), train=True)
        dy = np.ones_like(y)
        dy[1, 2, -1, -1] = np.inf
        with pytest.raises(ValueError, match=f"{cls.__name__}: dy contains NaN or inf"):
            layer.backward(dy, ctx)


@settings(max_examples=25, deadline=None)
@given(c=conv_geometry(), neg=st.sampled_from(["FALSE", "PN", "Shift"]), noise=st.sampled_from([0, 4]))
def test_quantized_conv2d_layouts_agree(c, neg, noise):
    """A stride-1 Conv2d runs on wide channels-first planes, the rest channels-last: with the wide layout
    switched off, y is the same bits and dx, dW, db agree to rounding (noise drawn from the same seed)."""
    import witnp.array.conv.layouts as L
    c["geo"]["stride"] = 1
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=16, scale_weight=64, scale_y=8,
                         handle_neg_in=neg, noise_level=noise)
    rng = np.random.default_rng(c["seed"])
    x = (rng.normal(size=(c["B"], c["ci"], c["H"], c["W"])) * 3).astype(np.float32)
    results = []
    for wide in (True, False):
        layer = build(c, False, cfg)
        old, L.supports = L.supports, (L.supports if wide else (lambda geo: False))
        try:
            y, ctx = layer.forward(x, train=True, rng=np.random.default_rng(7))
            assert isinstance(ctx.run.layout, L.Wide) == wide
            dx = layer.backward(np.random.default_rng(8).normal(size=y.shape).astype(np.float32), ctx)
        finally:
            L.supports = old
        results.append((y, dx, layer.grads["weight"], layer.grads["bias"]))
    (y, *grads), (y2, *grads2) = results
    np.testing.assert_array_equal(y, y2)
    for a, b in zip(grads, grads2):  # float gradients summed in another order: equal up to rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("neg", [None, "FALSE", "PN", "Shift"])
@pytest.mark.parametrize("k, s, p, d, g", [(3, 1, 1, 1, 1), (5, 2, 2, 1, 1), (3, 1, 2, 2, 3), (1, 3, 0, 1, 1)])
def test_conv1d_is_the_kernel_height_1_conv2d(neg, k, s, p, d, g):
    """Conv1d over (B, C, T) gives the bits of Conv2d with kernel (1, k) on (B, C, 1, T), and its gradients."""
    cfg = wn.LayerConfig() if neg is None else wn.LayerConfig(use_quantization=True, handle_neg_in=neg,
                                                              use_auto_scale=True)
    c1 = wn.Conv1d(6, 9, k, stride=s, padding=p, dilation=d, groups=g, config=cfg, rng=np.random.default_rng(1))
    c2 = wn.Conv2d(6, 9, (1, k), stride=(1, s), padding=(0, p), dilation=(1, d), groups=g, config=cfg,
                   rng=np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=(3, 6, 13)).astype(np.float32)
    y1, k1 = c1.forward(x, train=True)
    y2, k2 = c2.forward(x[:, :, None, :], train=True)
    np.testing.assert_array_equal(y1, y2[:, :, 0, :])
    dy = np.random.default_rng(3).normal(size=y1.shape).astype(np.float32)
    np.testing.assert_array_equal(c1.backward(dy, k1), c2.backward(dy[:, :, None, :], k2)[:, :, 0, :])
    for key in c1.grads:
        np.testing.assert_array_equal(c1.grads[key], c2.grads[key])
    assert c1(x[0]).shape == y1.shape[1:]  # unbatched (C, T)


def test_conv1d_refuses_pairs_and_images():
    with pytest.raises(ValueError, match="Conv1d: kernel_size=\\(3, 3\\)"):
        wn.Conv1d(2, 2, (3, 3))
    with pytest.raises(ValueError, match="Conv1d: x has shape"):
        wn.Conv1d(2, 2, 3).forward(np.zeros((1, 2, 4, 4), np.float32))
