"""The quantized GRU (docs/gru.md): three arrays zr, in, hn following the Linear rules, LUT sigmoid/tanh,
Q7 hidden state, shifts by 7 and scale_ones. Orchestrates `witnp.kernels.gru_q_forward/backward`.

Mapping from torch's parameters (gate order r, z, n):
    zr: W = [[W_iz, W_hz], [W_ir, W_hr]] (2H, I+H), b = [b_iz + b_hz, b_ir + b_hr]; input [x_t, h_{t-1}]
    in: W = W_in (H, I), b = b_in;   hn: W = W_hn (H, H), b = b_hn   (W_in = weight_ih[2H:], W_hn = weight_hh[2H:])
Scales: per array sx, sw (observer names x_zr, weight_zr, x_in, weight_in, x_hn, weight_hn), sy_zr for zr and
one sy_n shared by in and hn (their outputs are added). Power-of-two scales are required.
Noise (NORMAL): once per forward, arrays in the order zr, in, hn, each E1 (K_eff, O) then E2 (N, O).
"""
from __future__ import annotations

import numpy as np

from .. import kernels as K
from ..kernels.gru.quant_step import HQ, NF  # the slots of the saved per-step arrays
from .ctx import GRUCtx
from .matrix import amax, checked_gain, noisy_bias, weight_codes
from ..memory import empty
from ..quant import code_range, pow2_exponent

__all__ = ["array_params", "qgru_forward", "qgru_backward", "luts"]

f32 = np.float32
_EMPTY = np.empty((0, 0), np.float32)


def array_params(params, H, has_bias):
    """{name: (W (O, K) float32, b (O,) float32)} of the three arrays from torch-layout parameters."""
    wi, wh = params["weight_ih"], params["weight_hh"]
    bi = params["bias_ih"] if has_bias else np.zeros(3 * H, np.float32)
    bh = params["bias_hh"] if has_bias else np.zeros(3 * H, np.float32)
    wzr = np.concatenate([np.concatenate([wi[H:2 * H], wh[H:2 * H]], 1), np.concatenate([wi[:H], wh[:H]], 1)], 0)
    bzr = np.concatenate([bi[H:2 * H] + bh[H:2 * H], bi[:H] + bh[:H]]).astype(np.float32)
    return {"zr": (np.ascontiguousarray(wzr), bzr), "in": (np.ascontiguousarray(wi[2 * H:]), bi[2 * H:].copy()),
            "hn": (np.ascontiguousarray(wh[2 * H:]), bh[2 * H:].copy())}


def _check_pow2(s, what, owner):
    if pow2_exponent(s) is None:
        raise ValueError(f"{owner}: {what}={s} is not a power of two; the quantized GRU needs power-of-two scales")


def luts(yb, ones, sy_zr, sy_n):
    """(sigmoid LUT, tanh LUT, σ' and tanh' tables) over codes -2^(yb-1)..2^(yb-1)-1, evaluated in float32."""
    lo, hi = code_range(yb)
    c = np.arange(lo, hi + 1, dtype=np.float32)
    with np.errstate(over="ignore"):
        s = (f32(1) / (f32(1) + np.exp(-(c / f32(sy_zr))))).astype(np.float32)
    th = np.tanh(c / f32(sy_n)).astype(np.float32)
    lut_sig = np.clip(np.rint(s * f32(ones)), 0, ones).astype(np.int64)
    t128 = th * f32(128)
    lut_tanh = np.clip(np.rint(t128), -128, 127).astype(np.int64)
    dsig = (s * (f32(1) - s)).astype(np.float64)
    dtanh = np.where((t128 >= -128) & (t128 <= 127), f32(1) - th * th, f32(0)).astype(np.float64)
    return lut_sig, lut_tanh, dsig, dtanh


def _array(owner, name, W, b, cfg, sx, sw, noise, rng, yscale, dt=np.float64):
    """Codes of one array: weights, bias term, effective pos/neg matrices (K, O) of dtype dt and the factors."""
    O, Kin = W.shape
    wq, wmask = weight_codes(owner, W, cfg, sw, f"the {name} array's weight")
    P = f32(sx * sw)
    ba, bmask = np.empty(O, f32), np.empty(O, np.uint8)
    K.quantize_bias(b, wq, P, 0.0, np.zeros(O, f32), cfg.bias_row_N, False, ba, bmask, np.zeros(O, f32))
    pn = cfg.handle_neg_in == "PN"
    a = {"wq": wq, "wmask": wmask, "bmask": bmask, "ba": ba, "P": P, "sx": sx, "sw": sw, "pn": pn}
    noisy = noise is not None and noise.active
    if noisy:
        G = checked_gain(f"{owner} ({name} array)", sx, sw, yscale, "noisy forward")
        wm = np.concatenate([wq.T, -wq.T]) if pn else wq.T
        e1 = noise.draw(rng, wm.shape)
        wn = noise.apply(wm, e1).astype(dt)
        term, a["b_factor"] = noisy_bias(noise, rng, ba, cfg.bias_row_N)
        a["bias"] = term.astype(dt)
        a["wp"], a["wn"] = (wn[:Kin], wn[Kin:]) if pn else (wn, np.zeros_like(wn))
        a["w_factor"] = noise.derivative(wm, e1)
        a["k"] = 1.0 / G
        a["c"] = 1.0 / (G * yscale)
    else:
        wt = wq.T.astype(dt)
        a["wp"], a["wn"] = wt, (-wt if pn else np.zeros_like(wt))
        a["bias"] = (128.0 * ba.astype(np.float64)).astype(dt)
        a["k"] = yscale / float(P)
        a["c"] = 1.0 / float(P)
    a["noisy"] = noisy
    return a


def _xcodes(x2, sx, xb, pn, stacked, dt):
    """Input codes of x2 (M, K) float32 for one array: (A, mask). A (M, Ka) dt is the tile's operand:
    [pos | neg] (Ka = 2K) when `stacked`, else the signed codes pos - neg (without noise Wn = -Wp, and FALSE
    has no negative branch); mask (M, K) int8 is the straight-through factor of `quantize_input`."""
    M, Kin = x2.shape
    xa = empty((M, 2 * Kin if stacked else Kin))
    mask = empty((M, Kin), np.int8)
    K.quantize_input(x2, sx, 0.0, *code_range(xb, signed=False), pn, stacked, False, xa, _EMPTY, mask, n=x2.size)
    return xa.astype(dt, copy=False), mask


def _wrows(a, r0, r1, stacked, dt):
    """Rows r0:r1 (K, O) of an array's weights, [Wp; Wn] when stacked, with padded columns."""
    wp = a["wp"][r0:r1]
    return K.pad_cols(np.concatenate([wp, a["wn"][r0:r1]]) if stacked else wp, dt)


def qgru_forward(layer, x, h0, sc, noise, rng, want_stats=False):
    """x (N, T, I) float32, h0 (N, H) float32 -> y (N, T, H) float32 (codes/128), ctx, stats or None."""
    owner = type(layer).__name__
    cfg = layer.config
    N, T, I = x.shape
    H = layer.hidden_size
    xb, yb = cfg.x_quant_bits, cfg.y_quant_bits
    for k in ("x_zr", "weight_zr", "y_zr", "x_in", "weight_in", "x_hn", "weight_hn", "y_n"):
        _check_pow2(sc[k], "scale " + k, owner)
    arrays = array_params(layer.params, H, layer.has_bias)
    # float32 products are exact while every accumulator stays within 2^24 (noisy sums are not integers anyway)
    noisy = noise is not None and noise.active
    bound = (I + H) * 255 * 128 + 128 * 127 * cfg.bias_row_N
    dt = np.float32 if bound <= 1 << 24 or noisy else np.float64
    arr = {}
    for name in ("zr", "in", "hn"):
        W, b = arrays[name]
        ys = sc["y_zr"] if name == "zr" else sc["y_n"]
        arr[name] = _array(owner, name, W, b, cfg, sc["x_" + name], sc["weight_" + name], noise, rng, ys, dt)
    pn = cfg.handle_neg_in == "PN"
    stacked = pn and noisy  # only noise makes Wn differ from -Wp: else one signed product per array
    x2 = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, I)  # the recurrence runs time-major
    xz = _xcodes(x2, sc["x_zr"], xb, pn, stacked, dt)
    xi = _xcodes(x2, sc["x_in"], xb, pn, stacked, dt)
    zr, ar_in, hn = arr["zr"], arr["in"], arr["hn"]
    h0q = np.clip(np.rint(h0.astype(np.float64) * 128.0), -128, 127).astype(f32)
    ones = float(layer.scale_ones)
    tabs = np.stack([t.astype(f32) for t in luts(yb, ones, sc["y_zr"], sc["y_n"])])  # sig, tanh, σ', tanh'
    F = empty((T, N, NF, H))
    Kr = 2 * H if stacked else H
    hz = empty((T, N, Kr), dt)
    # equal input scales give the zr and hn arrays the same h codes: one array (the kernel's second write of
    # each row then repeats the first)
    hh = hz if sc["x_zr"] == sc["x_hn"] else empty((T, N, Kr), dt)
    amax_acc = np.zeros(3)
    y = empty((N, T, H))
    brow = lambda a: K.pad_cols(a["bias"][None, :], dt)[0]  # noqa: E731
    K.gru_q_forward(xz[0].reshape(T, N, -1), xi[0].reshape(T, N, -1), h0q, _wrows(zr, 0, I, stacked, dt),
                    _wrows(ar_in, 0, I, stacked, dt), _wrows(zr, I, I + H, stacked, dt), _wrows(hn, 0, H, stacked, dt),
                    np.concatenate([brow(zr), brow(ar_in), brow(hn)]), tabs,
                    np.array([sc["x_zr"], sc["x_hn"], zr["k"], ar_in["k"], hn["k"], zr["c"], hn["c"], ar_in["c"],
                              sc["y_n"], yb, pn, stacked, ones, bool(want_stats) and not noisy,
                              cfg.rounding == "floor"], np.float64),
                    F, hz, hh, amax_acc, y, n=N * T * H)
    hq = F[:, :, HQ]  # (T, N, H)
    ctx = GRUCtx(x_shape=x.shape, h0=h0, h0q=h0q, hq=hq, F=F, hz=hz, hh=hh, arr=arr, xz=xz, xi=xi, sc=dict(sc),
                 pn=pn, stacked=stacked, amax_acc=amax_acc)
    stats = None
    if want_stats:
        if noisy:  # the y statistics are the noiseless accumulators' (chip.md §5)
            c0 = qgru_forward(layer, x, h0, sc, None, None, True)[1]
        else:
            c0 = ctx
        hreal = np.concatenate([c0.h0q[None], c0.hq[:-1]]) / 128.0  # the h inputs of every step
        # acc/(sx·sw) = v/sy for every array (v = acc·k, k = sy/(sx·sw) > 0 without noise)
        stats = {"x_zr": max(amax(x), amax(hreal)), "x_in": amax(x), "x_hn": amax(hreal),
                 "weight_zr": amax(arrays["zr"][0]), "weight_in": amax(arrays["in"][0]),
                 "weight_hn": amax(arrays["hn"][0]),
                 "y_zr": f32(f32(c0.amax_acc[0] * zr["k"]) / sc["y_zr"]),
                 "y_n": f32(max(f32(c0.amax_acc[2] * ar_in["k"]), f32(c0.amax_acc[1] * hn["k"])) / sc["y_n"])}
    return y, ctx, stats


def _parts(A, n, stacked):
    """The tile operands (array, first column, columns) of codes A (M, n or 2n): (pos, neg) when stacked,
    else (signed codes, None); float32 (codes up to 255 are exact)."""
    A = A.astype(f32, copy=False)
    return ((A, 0, n), (A, n, n)) if stacked else ((A, 0, n), None)


def _at_g(part, G2, g0, O):
    """X[:, c0:c0+n]ᵀ @ G2[:, g0:g0+O] -> (n, O) float32, on the tile (`at_b`). G2 (M, ldg) needs the
    readable columns the tile's padded width asks for (the caller's slack)."""
    X, c0, n = part
    C = np.empty((n, K.lanes_up(O)), f32)
    K.at_b(X.reshape(X.size), c0, X.shape[1], n, X.shape[0], G2.reshape(G2.size), g0, G2.shape[1], C)
    return C[:, :O]


def _weight_grad(a, G2, g0, O, gsum, xs, hs, stacked):
    """dL/dW (O, K) and dL/db (O,) of one array (straight-through, masked by the weight clip) from its block
    G2[:, g0:g0+O] of dL/d(accumulator) and the block's column sums gsum (O,); xs, hs: the `_parts` of the
    x and h input columns (hs None for an array without them)."""
    parts = [p for p in (xs, hs) if p is not None]
    Kin = sum(p[0][2] for p in parts)

    def prod(i):
        out, c = np.empty((O, Kin), f32), 0
        for p in parts:
            out[:, c:c + p[i][2]] = _at_g(p[i], G2, g0, O).T
            c += p[i][2]
        return out
    dwq = prod(0)
    if a["noisy"]:
        wf = a["w_factor"]  # (K_eff, O): rows of [Wqᵀ; -Wqᵀ] with PN
        dwq = dwq * wf[:Kin].T - prod(1) * wf[Kin:].T if stacked else dwq * wf.T
    dW = np.zeros(a["wq"].shape, f32)
    K.scale_masked(np.ascontiguousarray(dwq, dtype=f32), a["wmask"], f32(a["sw"]), dW, True, n=dW.size)
    gb = gsum * (a["b_factor"] if a["noisy"] else 128.0)
    db = np.where(a["bmask"] != 0, gb, 0.0) * float(a["P"]) / 128.0
    return dW, db.astype(f32)


def qgru_backward(layer, dy, ctx):
    """dy (N, T, H) float32 -> dx (N, T, I), dh0 (N, H); adds the parameter gradients into layer.grads."""
    N, T, I = ctx.x_shape
    H = layer.hidden_size
    arr, sc, pn, stacked = ctx.arr, ctx.sc, ctx.pn, ctx.stacked
    zr, ar_in, hn = arr["zr"], arr["in"], arr["hn"]
    # G rows: [zr | hn | in] gradients plus zero slack, so that each block's tile reads (padded to LANES
    # columns) stay inside its row
    G = empty((T, N, 3 * H + K.lanes_up(H)))
    G[:, :, 4 * H:] = 0
    dh0 = np.empty((N, H), f32)
    dx = empty((T, N, I))
    gs = np.empty(4 * H, f32)

    def wT(a, r0, r1, blocks):  # rows r0:r1 of Wp (and Wn when stacked) transposed: (O, K) with padded blocks
        parts = [a["wp"][r0:r1].T] + ([a["wn"][r0:r1].T] if stacked else [])
        return np.concatenate([K.pad_cols(p, f32) for p in parts], 1) if blocks else K.pad_cols(np.concatenate(parts, 1), f32)
    mz, mi = ctx.xz[1].reshape(T, N, I), ctx.xi[1].reshape(T, N, I)
    K.gru_q_backward(np.ascontiguousarray(dy, dtype=f32), ctx.h0q, ctx.F,
                     wT(zr, I, I + H, False), wT(hn, 0, H, False), wT(zr, 0, I, True), wT(ar_in, 0, I, True), mz, mi,
                     np.array([sc["x_zr"], sc["x_hn"], sc["x_zr"], sc["x_in"], pn, stacked], np.float64), G, gs,
                     dx, dh0, n=N * T * H)
    G2 = G.reshape(T * N, G.shape[2])
    Kr = ctx.hz.shape[2]
    grads = {"zr": _weight_grad(zr, G2, 0, 2 * H, gs[:2 * H], _parts(ctx.xz[0], I, stacked),
                                _parts(ctx.hz.reshape(T * N, Kr), H, stacked), stacked),
             "in": _weight_grad(ar_in, G2, 3 * H, H, gs[3 * H:4 * H], _parts(ctx.xi[0], I, stacked), None, stacked),
             "hn": _weight_grad(hn, G2, 2 * H, H, gs[2 * H:3 * H], _parts(ctx.hh.reshape(T * N, Kr), H, stacked),
                                None, stacked)}
    _to_params(layer, grads, I, H)
    h128 = ctx.h0.astype(np.float64) * 128.0  # h0 enters as clip(R(h0·128), -128, 127)
    dh0_real = np.where((h128 >= -128) & (h128 <= 127), dh0, 0.0)
    return np.ascontiguousarray(dx.transpose(1, 0, 2)), dh0_real.astype(f32)


def _to_params(layer, grads, I, H):
    g = layer.grads
    dzr, dbzr = grads["zr"]
    g["weight_ih"][H:2 * H] += dzr[:H, :I]
    g["weight_hh"][H:2 * H] += dzr[:H, I:]
    g["weight_ih"][:H] += dzr[H:, :I]
    g["weight_hh"][:H] += dzr[H:, I:]
    g["weight_ih"][2 * H:] += grads["in"][0]
    g["weight_hh"][2 * H:] += grads["hn"][0]
    if layer.has_bias:
        for dst in ("bias_ih", "bias_hh"):
            g[dst][H:2 * H] += dbzr[:H]
            g[dst][:H] += dbzr[H:]
        g["bias_ih"][2 * H:] += grads["in"][1]
        g["bias_hh"][2 * H:] += grads["hn"][1]
