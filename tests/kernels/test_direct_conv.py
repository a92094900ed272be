"""Direct convolutions (register tile + tap tables) against im2row/row2im products of the NumPy twins.

Integer-valued operands make every comparison exact: the tile's fused multiply-adds and NumPy's matmul
then both give the exact integer sums."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from witnp.array.conv import direct as D
from witnp.array.conv.ops import Geometry, wmat_conv, wmat_convT
from . import reference as R
from witnp.kernels.simd.tile import LANES, rows_fma
from .twins import assert_parallel_equals_serial


def _rows(x, geo, pad, Ho, Wo):
    B, C = x.shape[0], x.shape[3]
    rows = np.empty((B * Ho * Wo, C * geo.kh * geo.kw), np.float32)
    R.im2row(x, *geo.args(Wo, geo.groups), pad, rows)
    return rows


def _per_group(G, a, ka, b, kb, tb=False):
    """Grouped product: group i multiplies a's column block i (width ka) by b's row block i (height kb),
    transposed first with tb; the results are laid side by side."""
    return np.concatenate([a[:, i * ka:(i + 1) * ka] @ (b[i * kb:(i + 1) * kb].T if tb else b[i * kb:(i + 1) * kb])
                           for i in range(G)], axis=1)


@st.composite
def geometries(draw):
    G = draw(st.sampled_from([1, 2]))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    op = (draw(st.integers(0, max(s[0], d[0]) - 1)), draw(st.integers(0, max(s[1], d[1]) - 1)))
    geo = Geometry(k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], op[0], op[1], groups=G)
    dims = dict(B=draw(st.integers(1, 2)), H=draw(st.integers(4, 9)), W=draw(st.integers(4, 9)),
                cg=draw(st.integers(1, 4)), og=draw(st.integers(1, 2 * LANES + 3)), seed=draw(st.integers(0, 99)))
    return geo, dims


def _ints(rng, shape, m=100):
    return rng.integers(-m, m + 1, size=shape).astype(np.float32)


@settings(deadline=None, max_examples=40)
@given(geometries())
def test_conv2d_forward_and_gradients_exact(case):
    geo, d = case
    Ho, Wo = geo.conv_out(d["H"], d["W"])
    if Ho < 1 or Wo < 1:
        return
    G = geo.groups
    rng = np.random.default_rng(d["seed"])
    x = _ints(rng, (d["B"], d["H"], d["W"], G * d["cg"]))
    wm = wmat_conv(_ints(rng, (G * d["og"], d["cg"], geo.kh, geo.kw)))
    rows = _rows(x, geo, 3.0, Ho, Wo)
    acc, hw = D.conv2d(x, wm, geo, pad=3.0)
    assert hw == (Ho, Wo)
    kc = rows.shape[1] // G
    np.testing.assert_array_equal(acc, _per_group(G, rows, kc, wm, d["og"], tb=True))
    g = _ints(rng, acc.shape, 20)
    want_dw = np.concatenate([g[:, i * d["og"]:(i + 1) * d["og"]].T @ rows[:, i * kc:(i + 1) * kc]
                              for i in range(G)], axis=0)
    np.testing.assert_array_equal(D.conv2d_dw(x, g, geo, pad=3.0), want_dw)
    xp = D.padded_input(x, geo, 3.0)
    np.testing.assert_array_equal(D.conv2d_dw(xp, g, geo, padded=True), want_dw)
    np.testing.assert_array_equal(D.conv2d(xp, wm, geo, padded=True)[0], acc)
    drows = _per_group(G, g, d["og"], wm, d["og"])
    want_dx = np.empty(x.shape, np.float32)
    R.row2im(drows, *geo.args(Wo, G), want_dx)
    np.testing.assert_array_equal(D.conv_transpose(g.reshape(d["B"], Ho, Wo, -1), wm, geo, (d["H"], d["W"])),
                                  want_dx)


@settings(deadline=None, max_examples=40)
@given(geometries())
def test_conv_transpose_forward_and_gradients_exact(case):
    geo, d = case
    Ho, Wo = geo.convT_out(d["H"], d["W"])
    if Ho < 1 or Wo < 1:
        return
    G = geo.groups
    rng = np.random.default_rng(d["seed"])
    ci = G * d["cg"]
    x = _ints(rng, (d["B"], d["H"], d["W"], ci))
    wm = wmat_convT(_ints(rng, (ci, d["og"], geo.kh, geo.kw)))
    xr = x.reshape(-1, ci)
    cols = _per_group(G, xr, d["cg"], wm, d["cg"])
    want = np.empty((d["B"], Ho, Wo, G * d["og"]), np.float32)
    R.row2im(cols, *geo.args(d["W"], G), want)
    np.testing.assert_array_equal(D.conv_transpose(x, wm, geo, (Ho, Wo)), want)
    g = _ints(rng, want.shape, 20)
    grows = _rows(g, geo, 0.0, d["H"], d["W"])  # im2row of g onto the input grid: the adjoint of row2im
    kc = grows.shape[1] // G
    want_dx = _per_group(G, grows, kc, wm, d["cg"], tb=True)
    dx, _ = D.conv2d(g, wm, geo, out_hw=(d["H"], d["W"]))  # output_padding >= stride: rows beyond x dropped
    np.testing.assert_array_equal(dx, want_dx)
    want_dw = np.concatenate([xr[:, i * d["cg"]:(i + 1) * d["cg"]].T @ grows[:, i * kc:(i + 1) * kc]
                              for i in range(G)], axis=0)
    np.testing.assert_array_equal(D.conv2d_dw(g, xr, geo, out_hw=(d["H"], d["W"])), want_dw)


@pytest.mark.parametrize("n", [1, 5, 6, 7, 10, 13, 22, 25])  # every compiled row count, both widths
@pytest.mark.parametrize("ncols", [LANES, 2 * LANES, 3 * LANES, 4 * LANES])
def test_rows_fma_every_tile_size(n, ncols):
    rng = np.random.default_rng(n * ncols)
    K = 37
    a, b = _ints(rng, (n, K)), _ints(rng, (K, ncols))
    c = np.full((n, ncols), 7, np.float32)
    one = np.zeros(1, np.int64)
    rows_fma(n, ncols, a.ravel(), 0, K, (one, 1, 1, K), b.ravel(), 0, ncols, c.ravel(), 0, ncols, False)
    np.testing.assert_array_equal(c, a @ b)
    rows_fma(n, ncols, a.ravel(), 0, K, (one, 1, 1, K), b.ravel(), 0, ncols, c.ravel(), 0, ncols, True)
    np.testing.assert_array_equal(c, 2 * (a @ b))


def test_float_inputs_close_to_float64():
    rng = np.random.default_rng(0)
    geo = Geometry(3, 3, 1, 1, 1, 1)
    x = rng.normal(size=(2, 9, 9, 5)).astype(np.float32)
    wm = rng.normal(size=(7, 45)).astype(np.float32)
    acc, _ = D.conv2d(x, wm, geo)
    rows = _rows(x, geo, 0.0, 9, 9)
    np.testing.assert_allclose(acc, rows.astype(np.float64) @ wm.T.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_parallel_twin_equals_serial():
    """conv_rows writes each output row from one iteration: the parallel twin gives the same bits."""
    rng = np.random.default_rng(3)
    geo = Geometry(3, 3, 2, 1, 1, 1)
    x = _ints(rng, (3, 8, 7, 4))
    wm = wmat_conv(_ints(rng, (2 * LANES + 1, 4, 3, 3)))
    assert_parallel_equals_serial(lambda: D.conv2d(x, wm, geo)[:1])


def test_wide_codes_fall_back_to_blocked_products():
    """Past the 2^24 bound (12-bit codes, 36 terms) the conv ops take im2row + blocked products; same sums."""
    from witnp.array.conv.ops import conv_forward, convT_forward
    rng = np.random.default_rng(4)
    geo = Geometry(3, 3, 2, 2, 1, 1)
    x = _ints(rng, (2, 7, 6, 4), 50)
    wm = wmat_conv(_ints(rng, (5, 4, 3, 3), 50))
    assert 9 * 4 > 2 ** 24 // (4095 * 128)
    direct, hw = D.conv2d(x, wm, geo, pad=2.0)
    xp = D.padded_input(x, geo, 2.0)
    blocked, hw2 = conv_forward(xp, wm, geo, 2.0, bound=(4095, 128), padded=True)
    assert blocked.dtype == np.float64 and hw2 == hw
    np.testing.assert_array_equal(blocked, direct)
    wt = wmat_convT(_ints(rng, (4, 5, 3, 3), 50))
    Ho, Wo = geo.convT_out(7, 6)
    np.testing.assert_array_equal(convT_forward(x, wt, geo, 5, bound=(4095, 128)),
                                  D.conv_transpose(x, wt, geo, (Ho, Wo)))


@pytest.mark.parametrize("k,s,p,d,op", [(4, 2, 1, 1, 0), (3, 2, 1, 1, 1), (1, 2, 0, 1, 1), (5, 2, 2, 2, 1),
                                        (2, 1, 0, 1, 0)])
def test_conv_transpose_joint_columns_equal_per_phase(monkeypatch, k, s, p, d, op):
    """The column phases done in one product (zero weights for a phase's absent taps) give the per-phase
    product's bits, float data included (adding exact zeros in the same order changes no sum)."""
    geo = Geometry(k, k, s, s, p, p, d, d, op, op)
    rng = np.random.default_rng(k + s + p)
    B, H, W, ci, co = 2, 5, 6, 7, 9
    Ho, Wo = geo.convT_out(H, W)
    assert Wo % s == 0
    x = rng.normal(size=(B, H, W, ci)).astype(np.float32)
    wm = wmat_convT(rng.normal(size=(ci, co, k, k)).astype(np.float32))
    calls = []
    D._convT_plan.cache_clear()  # plans are cached per geometry: make this one again
    joint = D._convT_joint_columns
    monkeypatch.setattr(D, "_convT_joint_columns", lambda *a: calls.append(1) or joint(*a))
    monkeypatch.setattr(D, "JOINT_COLUMNS", True)
    got = D.conv_transpose(x, wm, geo, (Ho, Wo))
    assert calls  # the joint path ran
    monkeypatch.setattr(D, "JOINT_COLUMNS", False)
    np.testing.assert_array_equal(got, D.conv_transpose(x, wm, geo, (Ho, Wo)))
    assert len(calls) == 1  # the per-phase plan did not take it


@pytest.mark.parametrize("cog", [9, 16, 32])
def test_joint_columns_chosen_for_k4_s2_on_this_width(cog):
    """The cost rule takes the joint product for the decoder's k4 s2 p1 at any channel count and SIMD width
    (its union wastes no multiply), and leaves a wasteful wide geometry (k3 s2 p1, 32 channels) per phase
    when a phase alone already fills the tile."""
    geo = Geometry(4, 4, 2, 2, 1, 1, 1, 1, 0, 0)
    assert D._use_joint(geo, 32, 32, cog)
    assert not D._use_joint(Geometry(4, 4, 2, 2, 1, 1, groups=2), 32, 32, cog)
    k3 = Geometry(3, 3, 2, 2, 1, 1, 1, 1, 1, 1)
    assert D._use_joint(k3, 32, 32, cog) == (2 * D._up(cog) <= 2 * LANES)


def test_conv_transpose_joint_columns_group_wastes_no_multiplies_for_k4_s2():
    """k4 s2 p1: the group (phase 1 of column w', phase 0 of w' + 1) reads two input columns, as each phase
    alone does, so the joint product multiplies no zero weights; its 2·(Wo/2 - 1) + 2 pixels per row are all
    covered (the equality with the per-phase product is the test above)."""
    geo = Geometry(4, 4, 2, 2, 1, 1, 1, 1, 0, 0)
    D._convT_plan.cache_clear()
    calls, ldc = D._convT_plan(geo, 2, 5, 6, 7, 10, 12, 9, True)
    inner = [c for c in calls if c[5] == 7]  # ps = Ci: the joint products along the output row
    edges = [c for c in calls if c[5] != 7]
    assert [len(c[1]) for c in inner] == [4, 4]  # 2 row taps x 2 column offsets, as one phase alone
    assert [c[4] for c in inner] == [5, 5] and len(edges) == 4  # 5 groups of two + the two edge columns
