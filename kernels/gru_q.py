"""The quantized GRU's recurrence (docs/gru.md): the three-array `Gru` form, whole sequences, no Python loop
per time step.

Per step, with h the Q7 hidden code (h = h_q/128), integer codes held in float32 (exact: the caller picks
float64 when an accumulator could pass 2^24):
    zr array:  acc = Azr_x[t] + hp·Wp_h + hn·Wn_h         (Azr_x: the x part and bias, precomputed for all t)
               y_zr = R(clip(acc·kzr, Y(yb)))            (kzr = sy/(sx·sw) without noise, 1/G with noise)
               z_q, r_q = LUT_sig[y_zr]                   (first H outputs z, next H r)
    hn array:  y_hn = R(clip((bias_hn + hp'·Wp_hn + hn'·Wn_hn)·khn, Y(yb)))
    in array:  y_in (precomputed for all t)
    rhn = ⌊r_q·y_hn / 2^7⌋;  n_pre = clip(y_in + rhn, Y(yb));  n_q = LUT_tanh[n_pre]
    h' = clip(⌊((ones - z_q)·n_q + z_q·h_q) / 2^7⌋, -128, 127)
Input codes of h for an array with scale sx: PN: hp = clip(R(relu(h)·sx), 0, 255), hn = clip(R(relu(-h)·sx)),
FALSE: hp = clip(R(h·sx), 0, 255), hn = 0. Without noise Wn = -Wp, so `signed` uses (hp - hn)·Wp: half the work.
Each step's products run over the whole batch with the weight row outermost (a small GEMM per step).
"""
import math

import numpy as np

from ._jit import kernel

__all__ = ["gru_q_forward", "gru_q_backward"]


@kernel
def gru_q_forward(azr_x, y_in, h0, wp_zr, wn_zr, wp_hn, wn_hn, b_hn, sx_zr, sx_hn, kzr, khn, yb, pn, signed, ones,
                  lut_sig, lut_tanh, hq, zq, rq, nq, vzr, vhn, npre, hcodes):
    """azr_x (N, T, 2H) float32|float64; y_in (N, T, H) codes; h0 (N, H) Q7 codes;
    wp_zr/wn_zr (H, 2H) h-rows of the zr array (pos/neg branch), wp_hn/wn_hn (H, H); b_hn (H,) bias term of hn;
    lut_sig/lut_tanh (2^yb,) int64 indexed by code + 2^(yb-1).
    Outputs (N, T, ·): hq (h' codes), zq, rq, nq, vzr (2H) and vhn (the arrays' outputs acc·k before rounding
    and clipping), npre (the n sum before its clip), hcodes (N, T, 4, H): [hp_zr, hn_zr, hp_hn, hn_hn].
    """
    N, T, H2 = azr_x.shape
    H = H2 // 2
    lo = -(1 << (yb - 1))
    hi = (1 << (yb - 1)) - 1
    off = 1 << (yb - 1)
    h = h0.copy()
    acc = np.empty((N, H2), azr_x.dtype)  # float32 when exact (the caller checks the 2^24 bound), else float64
    acc2 = np.empty((N, H), azr_x.dtype)
    zero = 0.0
    c255 = 255.0
    sxz, sxh = sx_zr, sx_hn
    for t in range(T):
        for b in range(N):
            for k in range(H):  # input codes of h for both arrays
                v = h[b, k] / 128.0  # float64: the codes below are exact integers whatever the array dtype
                if pn:
                    hcodes[b, t, 0, k] = min(max(np.rint(max(v, zero) * sxz), zero), c255)
                    hcodes[b, t, 1, k] = min(max(np.rint(max(-v, zero) * sxz), zero), c255)
                    hcodes[b, t, 2, k] = min(max(np.rint(max(v, zero) * sxh), zero), c255)
                    hcodes[b, t, 3, k] = min(max(np.rint(max(-v, zero) * sxh), zero), c255)
                else:
                    hcodes[b, t, 0, k] = min(max(np.rint(v * sxz), zero), c255)
                    hcodes[b, t, 1, k] = zero
                    hcodes[b, t, 2, k] = min(max(np.rint(v * sxh), zero), c255)
                    hcodes[b, t, 3, k] = zero
            for j in range(H2):
                acc[b, j] = azr_x[b, t, j]
            for j in range(H):
                acc2[b, j] = b_hn[j]
        for k in range(H):  # the two recurrent products, weight row k reused by every batch row
            for b in range(N):
                p1, n1, p2, n2 = hcodes[b, t, 0, k], hcodes[b, t, 1, k], hcodes[b, t, 2, k], hcodes[b, t, 3, k]
                if signed:
                    d1, d2 = p1 - n1, p2 - n2
                    for j in range(H2):
                        acc[b, j] += d1 * wp_zr[k, j]
                    for j in range(H):
                        acc2[b, j] += d2 * wp_hn[k, j]
                else:
                    for j in range(H2):
                        acc[b, j] += p1 * wp_zr[k, j] + n1 * wn_zr[k, j]
                    for j in range(H):
                        acc2[b, j] += p2 * wp_hn[k, j] + n2 * wn_hn[k, j]
        for b in range(N):
            for j in range(H2):
                vzr[b, t, j] = acc[b, j] * kzr
            for j in range(H):
                vh = acc2[b, j] * khn
                vhn[b, t, j] = vh
                y_hn = min(max(np.rint(vh), lo), hi)
                z = lut_sig[int(min(max(np.rint(vzr[b, t, j]), lo), hi)) + off]
                r = lut_sig[int(min(max(np.rint(vzr[b, t, H + j]), lo), hi)) + off]
                zq[b, t, j] = z
                rq[b, t, j] = r
                s = y_in[b, t, j] + math.floor(r * y_hn / 128.0)
                npre[b, t, j] = s
                nn = lut_tanh[int(min(max(s, lo), hi)) + off]
                nq[b, t, j] = nn
                hq[b, t, j] = min(max(math.floor(((ones - z) * nn + z * h[b, j]) / 128.0), -128.0), 127.0)
            for j in range(H):
                h[b, j] = hq[b, t, j]
    return hq


@kernel
def gru_q_backward(dhs, h0, hq, zq, rq, nq, yhn, npre, dsig_zr, dtanh, mzr, mhn, wpT_zr, wnT_zr, wpT_hn, wnT_hn,
                   sx_zr, sx_hn, czr, chn, yb, pn, signed, ones, sy_n, gzr, ghn, gin, dh0):
    """Straight-through backward through time of `gru_q_forward` (all quantities in real units).

    dhs (N, T, H) dL/dh_t (real h = code/128); yhn (N, T, H) the hn array's output codes; dsig_zr (N, T, 2H) σ'
    at the zr outputs; dtanh (N, T, H) tanh' at n_pre/sy_n (0 where the LUT output clips); mzr (N, T, 2H),
    mhn (N, T, H) the arrays' output-clip masks; wpT_*/wnT_* the h-rows' weights transposed ((2H, H), (H, H));
    czr, chn: d(real output)/d(accumulator) without the mask (1/(sx·sw), or 1/(G·sy) with noise).
    Outputs: gzr (N, T, 2H), ghn (N, T, H) = dL/d(accumulator), gin (N, T, H) = dL/d(real y_in), dh0 (N, H).
    """
    N, T, H = dhs.shape
    lo = -(1 << (yb - 1))
    hi = (1 << (yb - 1)) - 1
    dh = np.zeros((N, H), dhs.dtype)  # float32 (the caller's choice): gradients need no integer exactness
    a1 = np.zeros((N, H), dhs.dtype)
    a1n = np.zeros((N, H), dhs.dtype)
    a2 = np.zeros((N, H), dhs.dtype)
    a2n = np.zeros((N, H), dhs.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(N):
            for j in range(H):
                g = dh[b, j] + dhs[b, t, j]
                hp = hq[b, t - 1, j] if t > 0 else h0[b, j]
                z, r, n = zq[b, t, j], rq[b, t, j], nq[b, t, j]
                s = math.floor(((ones - z) * n + z * hp) / 128.0)
                if s < -128.0 or s > 127.0:
                    g = 0.0
                dz = g * (hp - n) / 16384.0 * ones * dsig_zr[b, t, j]  # dL/d(z pre-activation, real)
                dw = g * (ones - z) / 128.0 * dtanh[b, t, j]  # dL/d(n_pre real)
                if npre[b, t, j] < lo or npre[b, t, j] > hi:
                    dw = 0.0
                dr = dw * (yhn[b, t, j] / sy_n) / 128.0 * ones * dsig_zr[b, t, H + j]
                gzr[b, t, j] = dz * mzr[b, t, j] * czr
                gzr[b, t, H + j] = dr * mzr[b, t, H + j] * czr
                ghn[b, t, j] = dw * r / 128.0 * mhn[b, t, j] * chn
                gin[b, t, j] = dw
                dh[b, j] = g * z / 128.0
                a1[b, j] = 0.0
                a1n[b, j] = 0.0
                a2[b, j] = 0.0
                a2n[b, j] = 0.0
        for j in range(2 * H):  # a1 = gzr @ Wp_hᵀ (and a1n with Wn): weight row j reused by every batch row
            for b in range(N):
                gj = gzr[b, t, j]
                for k in range(H):
                    a1[b, k] += gj * wpT_zr[j, k]
                if not signed:
                    for k in range(H):
                        a1n[b, k] += gj * wnT_zr[j, k]
        for j in range(H):
            for b in range(N):
                gj = ghn[b, t, j]
                for k in range(H):
                    a2[b, k] += gj * wpT_hn[j, k]
                if not signed:
                    for k in range(H):
                        a2n[b, k] += gj * wnT_hn[j, k]
        for b in range(N):
            for k in range(H):  # through the h input codes of both arrays (d code/dh = ±sx inside the clip)
                v = (hq[b, t - 1, k] if t > 0 else h0[b, k]) / 128.0
                n1 = -a1[b, k] if signed else a1n[b, k]  # signed: Wn = -Wp
                n2 = -a2[b, k] if signed else a2n[b, k]
                d = 0.0
                if pn:
                    if v > 0:
                        if v * sx_zr <= 255.0:
                            d += sx_zr * a1[b, k]
                        if v * sx_hn <= 255.0:
                            d += sx_hn * a2[b, k]
                    elif v < 0:
                        if -v * sx_zr <= 255.0:
                            d -= sx_zr * n1
                        if -v * sx_hn <= 255.0:
                            d -= sx_hn * n2
                else:
                    if v * sx_zr >= 0.0 and v * sx_zr <= 255.0:
                        d += sx_zr * a1[b, k]
                    if v * sx_hn >= 0.0 and v * sx_hn <= 255.0:
                        d += sx_hn * a2[b, k]
                dh[b, k] += d
    for b in range(N):
        for j in range(H):
            dh0[b, j] = dh[b, j]
    return dh0
