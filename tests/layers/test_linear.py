"""Linear: the layer against an independent transcription of the spec, finite differences in float mode,
the straight-through rules directly, the protocol (batch dims, accumulation, stats) and bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import witnp as wn

from ..conftest import Replay, central_diff
from .spec_linear import spec_linear

SCALES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 3, 5, 12, 40]


def make(cfg, K, O, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    lin = wn.Linear(K, O, bias=bias, config=cfg)
    lin.params["weight"][...] = rng.normal(0, 0.6, (O, K))
    if bias:
        lin.params["bias"][...] = rng.normal(0, 1.5, O)
    return lin


@st.composite
def linear_cases(draw):
    K = draw(st.integers(1, 24))
    O = draw(st.integers(1, 9))
    B = draw(st.integers(1, 5))
    sx, sw = draw(st.sampled_from(SCALES)), draw(st.sampled_from(SCALES))
    sy = draw(st.sampled_from([s for s in SCALES if round(sx * sw / s) >= 1]))
    per_out = draw(st.booleans())
    return dict(K=K, O=O, B=B, sx=sx, sw=sw, sy=sy, xb=draw(st.integers(8, 12)), yb=draw(st.integers(8, 12)),
                N=draw(st.integers(1, 9)), neg=draw(st.sampled_from(["FALSE", "PN", "Shift"])),
                shift_num=draw(st.sampled_from([0.0, 0.5, 1.0, 1.671, 40.0])),
                bias=draw(st.booleans()),
                bias_d=(tuple(draw(st.lists(st.floats(-6, 6, width=32), min_size=O, max_size=O))) if per_out
                        else draw(st.floats(-6, 6, width=32))),
                w_clip=draw(st.sampled_from([None, 0.3, 1.0])), level=draw(st.sampled_from([0, 0, 3, 9])),
                xscale=draw(st.sampled_from([0.05, 1.0, 8.0, 60.0])), seed=draw(st.integers(0, 2 ** 16)))


@settings(max_examples=120, deadline=None)
@given(linear_cases())
def test_layer_equals_spec_transcription(c):
    rng = np.random.default_rng(c["seed"])
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=c["sx"], scale_weight=c["sw"],
                         scale_y=c["sy"], x_quant_bits=c["xb"], y_quant_bits=c["yb"], bias_row_N=c["N"],
                         handle_neg_in=c["neg"], shift_num=c["shift_num"], bias_d=c["bias_d"],
                         w_clip=c["w_clip"], noise_level=c["level"])
    lin = make(cfg, c["K"], c["O"], c["bias"], c["seed"])
    x = (rng.normal(0, 1, (c["B"], c["K"])) * c["xscale"]).astype(np.float32)
    gy = rng.normal(0, 1, (c["B"], c["O"])).astype(np.float32)
    Ka = 2 * c["K"] if c["neg"] == "PN" else c["K"]
    E1 = rng.standard_normal((Ka, c["O"]), dtype=np.float32)
    E2 = rng.standard_normal((c["N"], c["O"]), dtype=np.float32)
    y, ctx = lin.forward(x, train=False, rng=Replay([E1, E2]))
    W, b = lin.params["weight"], lin.params.get("bias")
    ys, dxs, dWs, dbs = spec_linear(x, W, b, sx=c["sx"], sw=c["sw"], sy=c["sy"], xb=c["xb"], yb=c["yb"],
                                    N=c["N"], neg=c["neg"], shift_num=c["shift_num"], bias_d=c["bias_d"],
                                    w_clip=c["w_clip"], level=c["level"], E1=E1, E2=E2, gy=gy)
    np.testing.assert_array_equal(y, ys)
    dx = lin.backward(gy, ctx)
    scale = lambda a: 1e-5 * max(1.0, float(np.abs(a).max()))  # noqa: E731
    np.testing.assert_allclose(dx, dxs, rtol=0, atol=scale(dxs))
    # Shift: dW = Σ g·Xq - s·Σ g/128·..., two terms of magnitude ~ (codes + s)·Σ|g|·sy/(sx·sw)·sw that cancel;
    # float32 (the layer) and float64 (the spec) then differ by a few ulps of the terms, not of the result
    s_off = min(c["shift_num"] * c["sx"], 2.0 ** c["xb"]) if c["neg"] == "Shift" else 0.0
    terms = (2.0 ** c["xb"] + s_off) * float(np.abs(gy).sum(axis=0).max()) * c["sy"] / c["sx"]
    w_atol = scale(dWs) + (8 * float(np.finfo(np.float32).eps) * terms if c["neg"] == "Shift" else 0.0)
    np.testing.assert_allclose(lin.grads["weight"], dWs, rtol=0, atol=w_atol)
    if c["bias"]:
        np.testing.assert_allclose(lin.grads["bias"], dbs, rtol=0, atol=scale(dbs))


def test_float_backward_matches_central_differences():
    """Float mode: the (out·dout).sum() trick, central differences in float64 on the float64 forward formula
    evaluated with the layer's own (float32) parameters; the layer's gradients must agree."""
    rng = np.random.default_rng(1)
    lin = wn.Linear(6, 4, config=wn.LayerConfig())
    x = rng.normal(size=(2, 3, 6)).astype(np.float32)
    gy = rng.normal(size=(2, 3, 4)).astype(np.float32)
    y, ctx = lin.forward(x)
    dx = lin.backward(gy, ctx)
    x64, W64, b64 = x.astype(np.float64), lin.params["weight"].astype(np.float64), lin.params["bias"].astype(
        np.float64)
    loss = lambda: float(((x64 @ W64.T + b64) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(y, x64 @ W64.T + b64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-6), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lin.grads["weight"], central_diff(loss, W64, 1e-6), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lin.grads["bias"], central_diff(loss, b64, 1e-6), rtol=1e-5, atol=1e-5)


def q8(**kw):
    base = dict(use_quantization=True, use_auto_scale=False, scale_x=16, scale_weight=64, scale_y=16)
    base.update(kw)
    return wn.LayerConfig(**base)


class TestStraightThrough:
    """chip.md §7 stated directly, on hand-built inputs."""

    def test_input_gradient_masked_by_input_clip(self):
        lin = make(q8(), 3, 2)
        lin.params["weight"][...] = 0.01
        x = np.array([[-0.5, 0.5, 100.0]], np.float32)  # negative: clipped at 0; 100·16 > 255: clipped
        y, ctx = lin.forward(x)
        dx = lin.backward(np.ones_like(y), ctx)
        assert dx[0, 0] == 0 and dx[0, 2] == 0 and dx[0, 1] != 0
        # the unclipped input's gradient is Σ_o Wq[o,1] / sw
        np.testing.assert_allclose(dx[0, 1], np.rint(0.01 * 64) * 2 / 64)

    def test_saturated_output_passes_no_gradient(self):
        lin = make(q8(), 2, 2)
        lin.params["weight"][...] = [[1.0, 1.0], [0.01, 0.01]]
        lin.params["bias"][...] = 0
        y, ctx = lin.forward(np.array([[10.0, 10.0]], np.float32))
        assert y[0, 0] == 127 / 16  # saturated at the top of Y(8)
        dx = lin.backward(np.array([[1.0, 0.0]], np.float32), ctx)
        assert not dx.any() and not lin.grads["weight"].any() and not lin.grads["bias"].any()

    def test_weight_and_bias_gradients_masked_by_their_clips(self):
        lin = make(q8(scale_y=1, bias_row_N=1), 2, 2)
        lin.params["weight"][...] = [[3.0, 0.5], [0.5, 0.5]]  # 3·64 > 127: clipped
        lin.params["bias"][...] = [0.0, 1000.0]  # 1000·1024/128 > 127·N: clipped
        y, ctx = lin.forward(np.array([[0.1, 0.1]], np.float32))
        lin.backward(np.ones_like(y) * 1e-3, ctx)
        assert lin.grads["weight"][0, 0] == 0 and lin.grads["weight"][0, 1] != 0
        assert lin.grads["bias"][1] == 0 and lin.grads["bias"][0] != 0

    def test_pn_gradient_flows_through_both_branches(self):
        lin = make(q8(handle_neg_in="PN"), 2, 1)
        lin.params["weight"][...] = [[0.5, 0.5]]
        x = np.array([[0.25, -0.25]], np.float32)
        y, ctx = lin.forward(x)
        dx = lin.backward(np.ones_like(y), ctx)
        np.testing.assert_allclose(dx, [[32 / 64, 32 / 64]])  # d/dx of (Xp - Xn)·Wq: +Wq/sw on both sides

    def test_split_input_gradient_goes_through_the_digital_part_divided_by_G(self):
        cfg = q8(x_quant_bits=10, scale_x=64, scale_weight=64, scale_y=16)  # G = 256
        lin = make(cfg, 1, 1)
        lin.params["weight"][...] = [[0.5]]
        lin.params["bias"][...] = 0
        y, ctx = lin.forward(np.array([[5.0]], np.float32))
        dx = lin.backward(np.ones_like(y), ctx)
        # dy/dx = (1/sy)·(1/G)·Wq·sx = 32·64/(16·256)
        np.testing.assert_allclose(dx, [[32 * 64 / (16 * 256)]])

    def test_w_clip_float_mode_clamps_in_place_and_quant_mode_does_not(self):
        f = make(wn.LayerConfig(w_clip=0.2), 3, 2)
        f.forward(np.ones((1, 3), np.float32))
        assert np.abs(f.params["weight"]).max() <= 0.2
        q = make(q8(w_clip=0.2), 3, 2)
        before = q.params["weight"].copy()
        y, ctx = q.forward(np.ones((1, 3), np.float32))
        np.testing.assert_array_equal(q.params["weight"], before)
        q.backward(np.ones_like(y) * 1e-3, ctx)
        assert np.all(q.grads["weight"][np.abs(before) > 0.2] == 0)

    def test_shift_weight_gradient_includes_the_bias_correction(self):
        lin = make(q8(handle_neg_in="Shift", shift_num=1.0), 2, 1)
        lin.params["weight"][...] = [[0.25, 0.25]]
        lin.params["bias"][...] = 0.5
        x = np.zeros((1, 2), np.float32)
        y, ctx = lin.forward(x)
        lin.backward(np.ones_like(y), ctx)
        # acc = Σ (x·sx + s)·Wq + 128·R((b·sx·sw - s·ΣWq)/128): the s terms cancel in the gradient
        np.testing.assert_allclose(lin.grads["weight"], [[0.0, 0.0]], atol=1e-7)

    def test_noise_gradient_keeps_the_a_sign_e_term(self):
        cfg = q8(noise_level=5, bias_row_N=1)
        lin = make(cfg, 1, 1)
        lin.params["weight"][...] = [[0.5]]
        lin.params["bias"][...] = 0
        e1, e2 = np.array([[1.5]], np.float32), np.array([[0.0]], np.float32)
        y, ctx = lin.forward(np.array([[1.0]], np.float32), rng=Replay([e1, e2]))
        lin.backward(np.ones_like(y), ctx)
        a = np.float32(0.015605 * 5)
        G = 16 * 64 / 16
        # y = R(Xq·(Wq + (a|Wq| + b)e1)/G)/sy  ->  dy/dW = Xq·(1 + a·e1)·sw/(G·sy)
        np.testing.assert_allclose(lin.grads["weight"], [[16 * (1 + a * 1.5) * 64 / (G * 16)]], rtol=1e-6)


class TestProtocol:
    def test_leading_batch_dims_are_kept(self):
        lin = make(q8(handle_neg_in="PN"), 5, 3)
        x = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
        y, ctx = lin.forward(x)
        assert y.shape == (2, 4, 3) and y.dtype == np.float32
        np.testing.assert_array_equal(y.reshape(8, 3), lin(x.reshape(8, 5)))
        assert lin.backward(np.ones_like(y), ctx).shape == x.shape

    @pytest.mark.parametrize("quant", [False, True])
    def test_gradients_accumulate(self, quant):
        lin = make(q8() if quant else wn.LayerConfig(), 4, 3)
        x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
        y, ctx = lin.forward(x)
        lin.backward(np.ones_like(y), ctx)
        once = {k: v.copy() for k, v in lin.grads.items()}
        lin.backward(np.ones_like(y), ctx)
        for k in once:
            np.testing.assert_allclose(lin.grads[k], 2 * once[k], rtol=1e-6)
        lin.zero_grad()
        assert all(not g.any() for g in lin.grads.values())

    def test_inference_changes_no_stats_and_training_records(self):
        lin = make(q8(use_auto_scale=True), 4, 3)
        x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32) * 3
        before = {k: v.copy() for k, v in lin.stats.items()}
        lin.forward(x, train=False)
        assert all(np.array_equal(lin.stats[k], before[k]) for k in before)
        lin.begin_epoch()
        assert all(float(v) == 8.0 for v in lin.stats.values())
        lin.forward(x, train=True)
        assert float(lin.stats["io_max_x"]) == np.abs(x).max()

    def test_same_seed_same_noise(self):
        lin = make(q8(noise_level=6), 8, 4)
        x = np.ones((2, 8), np.float32)
        wn.manual_seed(7)
        a = lin(x)
        b = lin(x)
        wn.manual_seed(7)
        np.testing.assert_array_equal(lin(x), a)
        assert not np.array_equal(a, b)
        gen1, gen2 = np.random.default_rng(3), np.random.default_rng(3)
        np.testing.assert_array_equal(lin.forward(x, rng=gen1)[0], lin.forward(x, rng=gen2)[0])

    def test_zero_input_keeps_the_previous_scale_and_warns(self):
        lin = make(q8(use_auto_scale=True, auto_scale_update_step=1), 3, 2)
        with pytest.warns(RuntimeWarning, match="io_max of x"):
            lin.forward(np.zeros((2, 3), np.float32), train=True)
        assert lin.scales["x"] == 16

    def test_vendor_alias_and_enums(self):
        cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=wn.HandleNegInType.PN,
                             noise_model=wn.NoiseModel.NORMAL, auto_scale_updata_step=5)
        lin = wn.WitinLinear(3, 2, layer_config=cfg)
        assert lin.config.handle_neg_in == "PN" and lin.config.auto_scale_update_step == 5


class TestBadInput:
    @pytest.mark.parametrize("x, err, match", [
        (np.ones((2, 5), np.float32), ValueError, r"Linear: x has shape \(2, 5\); expected \(\.\.\., 4\)"),
        (np.ones((2, 4), np.int64), TypeError, r"Linear: x has dtype int64; expected a floating-point"),
        (np.float32(1.0), ValueError, r"Linear: x has shape \(\)"),
        (np.array([[1, np.nan, 0, 0]], np.float32), ValueError, r"Linear: x contains 1 NaN or inf"),
    ])
    @pytest.mark.parametrize("quant", [False, True])
    def test_bad_x(self, x, err, match, quant):
        lin = make(q8() if quant else wn.LayerConfig(), 4, 2)
        with pytest.raises(err, match=match):
            lin.forward(x)

    def test_nan_weight(self):
        lin = make(q8(), 4, 2)
        lin.params["weight"][0, 0] = np.inf
        with pytest.raises(ValueError, match="Linear: weight contains 1 NaN or inf"):
            lin.forward(np.ones((1, 4), np.float32))

    def test_bad_dy(self):
        lin = make(q8(), 4, 2)
        y, ctx = lin.forward(np.ones((3, 4), np.float32))
        with pytest.raises(ValueError, match=r"Linear: dy has shape \(3, 3\); expected \(3, 2\)"):
            lin.backward(np.ones((3, 3), np.float32), ctx)
        with pytest.raises(ValueError, match="Linear: dy contains 3 NaN"):
            lin.backward(np.array([[np.nan, 0]] * 3, np.float32), ctx)

    def test_zero_gain_is_refused_at_the_forward_that_needs_it(self):
        lin = make(q8(scale_x=1, scale_weight=1, scale_y=4, x_quant_bits=10), 4, 2)  # R(1/4) = 0
        with pytest.raises(ValueError, match=r"Linear: gain G = R\(sx·sw/sy\).* is 0"):
            lin.forward(np.ones((1, 4), np.float32))
        ok = make(q8(scale_x=1, scale_weight=1, scale_y=4), 4, 2)  # no split, no noise: a ratio < 1 is valid
        ok.forward(np.ones((1, 4), np.float32))

    def test_bias_d_length(self):
        with pytest.raises(ValueError, match=r"bias_d has 3 entries; expected one per output \(2\)"):
            wn.Linear(4, 2, config=q8(bias_d=(1.0, 2.0, 3.0)))

    @pytest.mark.parametrize("kw", [dict(in_features=0), dict(out_features=2.5), dict(in_features=True)])
    def test_bad_sizes(self, kw):
        args = dict(in_features=3, out_features=2)
        args.update(kw)
        with pytest.raises(ValueError, match="Linear: (in|out)_features="):
            wn.Linear(**args)

    def test_config_must_be_layerconfig(self):
        with pytest.raises(TypeError, match="Linear: config must be a witnp.LayerConfig, got dict"):
            wn.Linear(3, 2, config={"use_quantization": True})
