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

from . import kernels as K
from .cim import amax, checked_gain, noisy_bias, weight_codes
from .quant import pow2_exponent

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
    c = np.arange(-(1 << (yb - 1)), 1 << (yb - 1), dtype=np.float32)
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


def _xcodes(x2, sx, xb, pn, dt):
    """(pos, neg, mask) input codes of x2 (M, K) float32 as dtype dt; neg is zeros and mask 0/1 for FALSE."""
    M, Kin = x2.shape
    xa = np.empty((M, 2 * Kin if pn else Kin), f32)
    mask = np.empty((M, Kin), np.int8)
    K.quantize_input(x2, sx, 0.0, 0, (1 << xb) - 1, pn, pn, False, xa, _EMPTY, mask, n=x2.size)
    if pn:
        return xa[:, :Kin].astype(dt), xa[:, Kin:].astype(dt), mask
    return xa.astype(dt), np.zeros((M, Kin), dt), mask


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
    x2 = x.reshape(N * T, I)
    xp_zr, xn_zr, xm_zr = _xcodes(x2, sc["x_zr"], xb, pn, dt)
    xp_in, xn_in, xm_in = _xcodes(x2, sc["x_in"], xb, pn, dt)
    zr, ar_in, hn = arr["zr"], arr["in"], arr["hn"]
    azr_x = (xp_zr @ zr["wp"][:I] + xn_zr @ zr["wn"][:I] + zr["bias"]).reshape(N, T, 2 * H)
    v_in = ((xp_in @ ar_in["wp"] + xn_in @ ar_in["wn"] + ar_in["bias"]) * ar_in["k"]).reshape(N, T, H)
    lo, hi = -(1 << (yb - 1)), (1 << (yb - 1)) - 1
    y_in = np.clip(np.rint(v_in), lo, hi)
    h0q = np.clip(np.rint(h0.astype(np.float64) * 128.0), -128, 127)
    ones = float(layer.scale_ones)
    lut_sig, lut_tanh, dsig, dtanh = luts(yb, ones, sc["y_zr"], sc["y_n"])
    hq, zq, rq, nq, npre = (np.empty((N, T, H)) for _ in range(5))
    vzr, vhn = np.empty((N, T, 2 * H), dt), np.empty((N, T, H), dt)
    hcodes = np.empty((N, T, 4, H), dt)
    signed = not zr["noisy"]  # without noise Wn = -Wp (or unused for FALSE, where hn codes are 0)
    cast = lambda a: np.ascontiguousarray(a, dtype=dt)  # noqa: E731
    K.gru_q_forward(cast(azr_x), y_in, h0q, cast(zr["wp"][I:]), cast(zr["wn"][I:]), cast(hn["wp"]), cast(hn["wn"]),
                    cast(hn["bias"]), float(sc["x_zr"]), float(sc["x_hn"]), zr["k"], hn["k"], yb, pn, signed, ones,
                    lut_sig, lut_tanh, hq, zq, rq, nq, vzr, vhn, npre, hcodes, n=N * T * H)
    off = 1 << (yb - 1)
    yzr_codes = np.clip(np.rint(vzr), lo, hi).astype(np.int64)
    npre_c = np.clip(npre, lo, hi).astype(np.int64)
    ctx = dict(x_shape=x.shape, h0=h0, h0q=h0q, hq=hq, zq=zq, rq=rq, nq=nq, yhn=np.clip(np.rint(vhn), lo, hi),
               npre=npre, hcodes=hcodes, dsig=dsig[yzr_codes + off].astype(f32),
               dtanh=dtanh[npre_c + off].astype(f32), mzr=((vzr >= lo) & (vzr <= hi)).astype(f32),
               mhn=((vhn >= lo) & (vhn <= hi)).astype(f32),
               min=((v_in >= lo) & (v_in <= hi)), arr=arr, xp_zr=xp_zr, xn_zr=xn_zr, xm_zr=xm_zr, xp_in=xp_in,
               xn_in=xn_in, xm_in=xm_in, sc=dict(sc), pn=pn, ones=ones, yb=yb, signed=signed)
    ctx.update(vzr=vzr, vhn=vhn, v_in=v_in)
    stats = None
    if want_stats:
        if noise is not None and noise.active:  # the y statistics are the noiseless accumulators' (chip.md §5)
            c0 = qgru_forward(layer, x, h0, sc, None, None, False)[1]
        else:
            c0 = ctx
        hreal = np.concatenate([c0["h0q"][:, None], c0["hq"][:, :-1]], axis=1) / 128.0
        stats = {"x_zr": max(amax(x), amax(hreal)), "x_in": amax(x), "x_hn": amax(hreal),
                 "weight_zr": amax(arrays["zr"][0]), "weight_in": amax(arrays["in"][0]),
                 "weight_hn": amax(arrays["hn"][0]),
                 # acc/(sx·sw) = v/sy for every array (v = acc·sy/(sx·sw) without noise)
                 "y_zr": f32(amax(c0["vzr"]) / sc["y_zr"]),
                 "y_n": f32(max(amax(c0["v_in"]), amax(c0["vhn"])) / sc["y_n"])}
    return (hq / 128.0).astype(np.float32), ctx, stats


def qgru_backward(layer, dy, ctx):
    """dy (N, T, H) float32 -> dx (N, T, I), dh0 (N, H); adds the parameter gradients into layer.grads."""
    N, T, I = ctx["x_shape"]
    H = layer.hidden_size
    arr, sc, pn = ctx["arr"], ctx["sc"], ctx["pn"]
    zr, ar_in, hn = arr["zr"], arr["in"], arr["hn"]
    gzr, gin = np.empty((N, T, 2 * H), f32), np.empty((N, T, H), f32)
    ghn = np.empty((N, T, H), f32)
    dh0 = np.empty((N, H), f32)
    tr = lambda a: np.ascontiguousarray(a.T, dtype=f32)  # noqa: E731  (rows j of Wᵀ in the inner loop)
    K.gru_q_backward(np.ascontiguousarray(dy, dtype=f32), ctx["h0q"], ctx["hq"], ctx["zq"], ctx["rq"], ctx["nq"],
                     ctx["yhn"],
                     ctx["npre"], ctx["dsig"], ctx["dtanh"], ctx["mzr"], ctx["mhn"], tr(zr["wp"][I:]),
                     tr(zr["wn"][I:]), tr(hn["wp"]), tr(hn["wn"]), float(sc["x_zr"]), float(sc["x_hn"]), zr["c"],
                     hn["c"], ctx["yb"], pn, ctx["signed"], ctx["ones"], float(sc["y_n"]), gzr, ghn, gin, dh0,
                     n=N * T * H)
    g_in = (gin * ctx["min"] * ar_in["c"]).reshape(N * T, H).astype(f32)  # gradients: float32 products
    g_zr, g_hn = gzr.reshape(N * T, 2 * H).astype(f32), ghn.reshape(N * T, H).astype(f32)
    hc = ctx["hcodes"].reshape(N * T, 4, H)
    grads = {}
    for name, g, xp, xn in (("zr", g_zr, np.concatenate([ctx["xp_zr"], hc[:, 0]], 1),
                             np.concatenate([ctx["xn_zr"], hc[:, 1]], 1)),
                            ("in", g_in, ctx["xp_in"], ctx["xn_in"]), ("hn", g_hn, hc[:, 2], hc[:, 3])):
        a = arr[name]
        dwp, dwn = xp.astype(f32).T @ g, xn.astype(f32).T @ g
        if a["noisy"]:
            dwm = np.concatenate([dwp, dwn]) if a["pn"] else dwp
            dwm = dwm * a["w_factor"]
            dwp, dwn = (dwm[:len(dwp)], dwm[len(dwp):]) if a["pn"] else (dwm, None)
        dwq = (dwp - dwn).T if a["pn"] else dwp.T
        dW = np.zeros(a["wq"].shape, f32)
        K.scale_masked(np.ascontiguousarray(dwq, dtype=f32), a["wmask"], a["sw"], dW, True, n=dW.size)
        gb = g.sum(axis=0) * (a["b_factor"] if a["noisy"] else 128.0)
        db = np.where(a["bmask"] != 0, gb, 0.0) * float(a["P"]) / 128.0
        grads[name] = (dW, db.astype(f32))
    _to_params(layer, grads, I, H)
    dx = np.zeros((N * T, I), f32)
    for name, g, key in (("zr", g_zr, "zr"), ("in", g_in, "in")):
        a = arr[name]
        wp, wn = a["wp"][:I].astype(f32), a["wn"][:I].astype(f32)
        dxp = g @ wp.T
        mask = ctx["xm_" + key]
        if pn:  # Xp = R(clip(relu(x)·sx)), Xn = R(clip(relu(-x)·sx)): dXn/dx = -sx
            part = np.where(mask > 0, dxp * sc["x_" + key], np.where(mask < 0, (g @ wn.T) * -sc["x_" + key], 0))
        else:
            part = np.where(mask != 0, dxp * sc["x_" + key], 0)
        dx += part.astype(f32)
    h128 = ctx["h0"].astype(np.float64) * 128.0  # h0 enters as clip(R(h0·128), -128, 127)
    dh0_real = np.where((h128 >= -128) & (h128 <= 127), dh0, 0.0)
    return dx.reshape(N, T, I), dh0_real.astype(f32)


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
