"""The quantized GRU (docs/gru.md): the integer reference equals the training forward bit for bit, noise is
replayable, the straight-through backward agrees with the float GRU's gradient where quantization is fine,
and the firmware arrays come out."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import witnp as wn
from witnp.array import gru as cim_gru
from witnp.handoff.int_ops import gru_q_int
from witnp.train.loop import with_config

from ..conftest import Replay
from .gru_reference import gru_integer, gru_integer_grads

pytestmark = pytest.mark.filterwarnings("ignore:.*io_max of:RuntimeWarning")


def qcfg(neg="PN", yb=8, **kw):
    base = dict(use_quantization=True, handle_neg_in=neg, use_auto_scale=False, scale_x=64, scale_weight=128,
                scale_y=32, y_quant_bits=yb)
    base.update(kw)
    return wn.LayerConfig(**base)


def integer_reference(g, x, h0, amax=None):
    """The integer engine's GRU (`gru_q_int`) on the codes witnp's arrays make. amax: see `gru_q_int`."""
    sc = g.scales
    H = g.hidden_size
    arrays = cim_gru.array_params(g.params, H, g.has_bias)
    pn = g.config.handle_neg_in == "PN"

    def xcodes(sx):
        v = x * np.float32(sx)
        if pn:
            return (np.clip(np.rint(np.maximum(v, 0)), 0, 255).astype(np.int64),
                    np.clip(np.rint(np.maximum(-v, 0)), 0, 255).astype(np.int64))
        return np.clip(np.rint(v), 0, 255).astype(np.int64), np.zeros(x.shape, np.int64)

    a = {n: cim_gru._array("GRU", n, W, b, g.config, sc["x_" + n], sc["weight_" + n], None, None,
                           sc["y_zr"] if n == "zr" else sc["y_n"]) for n, (W, b) in arrays.items()}
    e = {n: int(math.log2(sc["y_zr"] if n == "zr" else sc["y_n"]) - math.log2(sc["x_" + n])
                - math.log2(sc["weight_" + n])) for n in a}
    ls, lt, _, _ = cim_gru.luts(g.config.y_quant_bits, g.scale_ones, sc["y_zr"], sc["y_n"])
    h0q = np.clip(np.rint(h0.astype(np.float64) * 128), -128, 127).astype(np.int64)
    b = {n: (128 * a[n]["ba"].astype(np.int64)) for n in a}
    return gru_q_int(xcodes(sc["x_zr"]), xcodes(sc["x_in"]), h0q, a["zr"]["wq"], a["in"]["wq"], a["hn"]["wq"],
                     b["zr"], b["in"], b["hn"], e["zr"], e["in"], e["hn"], int(math.log2(sc["x_zr"])) - 7,
                     int(math.log2(sc["x_hn"])) - 7, g.config.y_quant_bits, pn, g.scale_ones, ls, lt, amax)


def independent(g, x, h0):
    """tests/layers/gru_reference.py (docs/gru.md transcribed, no witnp code) for the GRU layer g."""
    p = g.params
    return gru_integer(p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), x, h0, g.scales,
                       g.config.handle_neg_in == "PN", g.config.y_quant_bits, g.scale_ones, g.config.bias_row_N)


GRU_CASES = dict(N=st.integers(1, 3), T=st.integers(1, 6), I=st.integers(1, 5), H=st.integers(1, 6),
                 neg=st.sampled_from(["PN", "FALSE"]), yb=st.integers(8, 10), ones=st.sampled_from([127, 128]),
                 sx=st.sampled_from([16, 64, 256]), sw=st.sampled_from([32, 128, 512]),
                 sy=st.sampled_from([8, 32, 128]), N_rows=st.integers(1, 8), bias=st.booleans(),
                 seed=st.integers(0, 10 ** 6))


def _case(N, T, I, H, neg, yb, ones, sx, sw, sy, N_rows, bias, seed):
    rng = np.random.default_rng(seed)
    g = wn.GRU(I, H, bias=bias, config=qcfg(neg, yb, scale_x=sx, scale_weight=sw, scale_y=sy, bias_row_N=N_rows),
               rng=rng, scale_ones=ones)
    x = rng.normal(size=(N, T, I)).astype(np.float32)
    h0 = (rng.normal(size=(N, H)) * 0.6).astype(np.float32)
    return g, x, h0


@settings(max_examples=40, deadline=None)
@given(**GRU_CASES)
def test_training_forward_equals_the_independent_reference(**case):
    g, x, h0 = _case(**case)
    y, _ = g.forward((x, h0), train=True)
    np.testing.assert_array_equal(y * 128, independent(g, x, h0).astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(**GRU_CASES)
def test_the_engines_integer_gru_equals_the_independent_reference(**case):
    """int_ops.gru_q_int (the integer engine's GRU) on the codes witnp makes, against the transcription."""
    g, x, h0 = _case(**case)
    np.testing.assert_array_equal(integer_reference(g, x, h0), independent(g, x, h0))


@settings(max_examples=30, deadline=None)
@given(**GRU_CASES)
def test_straight_through_gradients_equal_the_independent_reference(**case):
    """Every gradient of the quantized GRU (x, h0, both weights, both biases) against docs/gru.md's backward
    transcribed formula by formula (gru_reference.gru_integer_grads), to float order: a missing 1/sy, a wrong
    mask or a swapped gate fails here, which the cosine check against the float GRU cannot see."""
    g, x, h0 = _case(**case)
    y, ctx = g.forward((x, h0), train=True)
    dy = np.random.default_rng(case["seed"] + 1).normal(size=y.shape).astype(np.float32)
    dx, dh0 = g.backward(dy, ctx)
    p = g.params
    want = gru_integer_grads(p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), x, h0, dy, g.scales,
                             g.config.handle_neg_in == "PN", g.config.y_quant_bits, g.scale_ones, g.config.bias_row_N)
    got = dict(x=dx, h0=dh0, **g.grads)
    for k in ("x", "h0", "weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if case["bias"] else ()):
        scale = max(1e-3, float(np.abs(want[k]).max()))
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


@pytest.mark.parametrize("neg", ["PN", "FALSE"])
def test_exported_gru_on_the_integer_engine_equals_the_independent_reference(neg):
    from witnp.handoff.engine import IntegerEngine
    from witnp.handoff.export import export_model
    g, x, _ = _case(3, 7, 4, 5, neg, 8, 128, 64, 128, 32, 2, True, 11)
    model = wn.Sequential(g)
    y_eng = IntegerEngine(export_model(model)).run(x)[0]
    want = independent(g, x, np.zeros((3, 5), np.float32)).astype(np.float32) / 128
    np.testing.assert_array_equal(y_eng, want)


@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 5), I=st.integers(1, 5), H=st.integers(1, 20), neg=st.sampled_from(["PN", "FALSE"]),
       sx=st.sampled_from([16, 64]), sw=st.sampled_from([32, 128]), seed=st.integers(0, 10 ** 6))
def test_auto_scale_statistics_are_the_accumulator_maxima(T, I, H, neg, sx, sw, seed):
    """The y statistics the observer records are max |accumulator| of each array over the sequence (tracked
    inside the kernel) times sy/(sx·sw), over sy: checked against the integer reference's accumulators."""
    rng = np.random.default_rng(seed)
    g = wn.GRU(I, H, config=qcfg(neg, scale_x=sx, scale_weight=sw), rng=rng)
    x = (rng.normal(size=(3, T, I)) * 2).astype(np.float32)
    h0 = (rng.normal(size=(3, H)) * 0.6).astype(np.float32)
    sc = g.scales
    _, _, stats = cim_gru.qgru_forward(g, x, h0, sc, None, None, want_stats=True)
    amax = {}
    integer_reference(g, x, h0, amax)
    assert amax["zr"] > 0 and amax["hn"] + amax["in"] > 0
    k = {n: sc["y_zr" if n == "zr" else "y_n"] / (sc["x_" + n] * sc["weight_" + n]) for n in amax}
    v = {n: np.float32(amax[n] * k[n]) for n in amax}
    assert stats["y_zr"] == np.float32(v["zr"] / sc["y_zr"])
    assert stats["y_n"] == np.float32(max(v["in"], v["hn"]) / sc["y_n"])


def test_noise_is_replayable_and_drawn_in_the_documented_order():
    g = wn.GRU(3, 4, config=qcfg(noise_level=5, bias_row_N=2), rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    draws = np.random.default_rng(7)
    shapes = [(2 * 7, 8), (2, 8), (2 * 3, 4), (2, 4), (2 * 4, 4), (2, 4)]  # zr, in, hn: E1 (K_eff, O), E2 (N, O)
    rec = [draws.standard_normal(s, dtype=np.float32) for s in shapes]
    r1 = Replay(rec)
    y1 = g.forward(x, rng=r1)[0]
    assert r1.shapes == shapes and not r1.arrays
    y2 = g.forward(x, rng=Replay(rec))[0]
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, g.forward(x, rng=np.random.default_rng(3))[0])


@pytest.mark.parametrize("neg", ["PN", "FALSE"])
def test_straight_through_gradient_follows_the_float_gradient(neg):
    """With fine scales the quantized GRU is close to the float one, and so must be its gradient."""
    rng = np.random.default_rng(0)
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=neg, use_auto_scale=True, auto_scale_update_step=1,
                         scale_x=64, scale_weight=64, scale_y=16, y_quant_bits=10)
    g = wn.GRU(6, 16, config=cfg, rng=np.random.default_rng(0))
    x = (rng.normal(size=(8, 12, 6)) * 0.7).astype(np.float32)
    if neg == "FALSE":
        x = np.abs(x)
    g.begin_epoch()
    g.forward(x, train=True)
    gf = with_config(g, {"use_quantization": False})
    yq, cq = g.forward(x)
    yf, cf = gf.forward(x)
    assert np.abs(yq - yf).mean() < 0.05
    gy = rng.normal(size=yq.shape).astype(np.float32)
    dxq, dxf = g.backward(gy, cq), gf.backward(gy, cf)
    cos = lambda a, b: float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(dxq, dxf) > 0.98
    for k in ("weight_ih", "bias_ih", "bias_hh"):
        assert cos(g.grads[k], gf.grads[k]) > 0.97, k
    if neg == "PN":  # FALSE drops negative hidden values, so its recurrent gradient differs by design
        assert cos(g.grads["weight_hh"], gf.grads["weight_hh"]) > 0.97


def test_hidden_clip_blocks_the_gradient_and_cell_matches_sequence():
    g = wn.GRUCell(2, 3, config=qcfg(), rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 2)).astype(np.float32)
    h = np.full((4, 3), 5.0, np.float32)  # 5·128 is far outside Q7: the input clip passes no gradient
    y, ctx = g.forward((x, h))
    dx, dh = g.backward(np.ones_like(y), ctx)
    assert not dh.any() and dx.shape == x.shape
    seq = wn.GRU(2, 3, config=qcfg(), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(seq((x[:, None], h))[:, 0], y)


def test_export_arrays():
    g = wn.GRU(3, 4, config=qcfg(), rng=np.random.default_rng(0))
    ex = g.export_arrays()
    assert ex["zr"]["weight"].shape == (8, 7) and ex["zr"]["weight"].dtype == np.int8
    assert ex["in"]["weight"].shape == (4, 3) and ex["hn"]["weight"].shape == (4, 4)
    assert all(np.all(ex[a]["bias_npu"] % 128 == 0) for a in ("zr", "in", "hn"))
    assert ex["zr"]["G"] == 64 * 128 // 32 and ex["zr"]["shift_G"] == 8
    assert ex["lut_sigmoid"].shape == (256,) and ex["lut_tanh"].min() >= -128 and ex["scale_ones"] == 128
    assert ex["shift_bits"] == [-7, -7]


def test_quantized_config_refusals():
    with pytest.raises(ValueError, match="handle_neg_in='Shift' is not supported by the quantized GRU"):
        wn.GRU(3, 4, config=qcfg("Shift"))
    with pytest.raises(ValueError, match="needs x_quant_bits=8"):
        wn.GRU(3, 4, config=qcfg(x_quant_bits=10))
    with pytest.raises(ValueError, match="scale_ones=100"):
        wn.GRU(3, 4, config=qcfg(), scale_ones=100)


@pytest.mark.parametrize("neg", ["PN", "FALSE"])
def test_past_the_float32_bound_runs_float64_and_stays_exact(neg):
    """I + H > 514: an accumulator could pass 2^24, so the recurrence runs in float64 (plain-loop products
    instead of the float32 tile); it must still equal the integer reference and give finite gradients."""
    rng = np.random.default_rng(5)
    g = wn.GRU(520, 8, config=qcfg(neg, scale_x=256, scale_weight=512, scale_y=16), rng=rng)
    x = rng.normal(size=(2, 3, 520)).astype(np.float32)
    h0 = (rng.normal(size=(2, 8)) * 0.6).astype(np.float32)
    y, ctx = g.forward((x, h0), train=True)
    assert ctx.run.hz.dtype == np.float64
    np.testing.assert_array_equal(y * 128, integer_reference(g, x, h0).astype(np.float32))
    dx, dh0 = g.backward(np.ones_like(y), ctx)
    assert np.isfinite(dx).all() and np.isfinite(g.grads["weight_ih"]).all() and dx.shape == x.shape
