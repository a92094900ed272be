"""The wide-plane passes fused with their neighbours, so that no step-sized intermediate goes through memory.

Measured on the QAT Conv2d B32 16->32 3x3 32x32 step (one core), the element passes around the products
cost about as much as one of the three products: quantize + to_wide, requant_wide over the accumulator
planes (4.3 MB written, then read back) and input_grad_wide over the dx planes. Here:

    quantize_wide   the input codes go straight into the padded wide planes (the NCHW codes are never made)
    wide_conv_rq    each image's accumulator planes (O·ld floats, ~140 KB: in L2) are requantized into y
                    right after the image's products, so the planes never leave the cache; the output may be
                    strided (a ConvTranspose2d phase writes every s-th row and column of y)
    wide_conv_ig    the same for the input gradient: dx through the input mask, per image

Each gives the bits of the unfused pair (`kernels.quant`, `kernels.wide`); the tests compare them.
"""
import numba
import numpy as np
from numba import prange

from ._jit import OPTIONS, kernel
from .layout import _fill
from .wide import conv_image

__all__ = ["quantize_wide", "wide_conv_rq", "wide_conv_ig"]


@numba.njit(**OPTIONS)
def _quantize_plane(xf, s_pl, H, W, sx, shift, lo, hi, pn, outp, outn, o0, ld, S, top, left, fill, mf):
    """One plane of `quantize_wide`: source xf[s_pl:], plane at o0. Returns its non-finite count."""
    zero = np.float32(0)
    _fill(outp, o0, top * S + left, fill)
    if pn:
        _fill(outn, o0, top * S + left, zero)
    nb = 0
    for h in range(H):
        r = o0 + (top + h) * S + left
        s0, d0 = np.uint64(s_pl + h * W), np.uint64(r)
        if pn:
            for w in range(W):
                v = xf[s0 + np.uint64(w)]
                nb += 0 if abs(v) < np.inf else 1
                p = max(v, zero) * sx
                q = max(-v, zero) * sx
                outp[d0 + np.uint64(w)] = np.rint(min(max(p, lo), hi))
                outn[d0 + np.uint64(w)] = np.rint(min(max(q, lo), hi))
                mf[s0 + np.uint64(w)] = np.int8((v > zero) & (p <= hi)) - np.int8((v < zero) & (q <= hi))
        else:
            for w in range(W):
                v = xf[s0 + np.uint64(w)]
                nb += 0 if abs(v) < np.inf else 1
                c = v * sx + shift
                outp[d0 + np.uint64(w)] = np.rint(min(max(c, lo), hi))
                mf[s0 + np.uint64(w)] = np.int8((c >= lo) & (c <= hi))
        end = ((top + h + 1) * S + left if h < H - 1 else ld) - (r + W - o0)
        _fill(outp, r + W, end, fill)
        if pn:
            _fill(outn, r + W, end, zero)
    return nb


@kernel
def quantize_wide(x, sx, shift, lo, hi, pn, outp, outn, m0, ld, S, top, left, fill, mask):
    """`quant.quantize_input` (no split; PN concatenated) written into wide planes (`wide.to_wide`'s layout):
    x[b, c, h, w]'s code at outp[m0 + (b·C + c)·ld + (top + h)·S + left + w], `fill` everywhere else in outp;
    with `pn` the negative branch's code at the same place in outn (0 elsewhere; outn unused otherwise).
    Codes: FALSE/Shift R(clip(x·sx + shift, [lo, hi])); PN R(clip(relu(±x)·sx, [lo, hi])).
    x (B, C, H, W) float32; mask (B, C, H, W) int8 out, as quantize_input's. Returns the number of
    non-finite x."""
    B, C, H, W = x.shape
    xf, mf = x.reshape(x.size), mask.reshape(mask.size)
    sx, shift, lo, hi = np.float32(sx), np.float32(shift), np.float32(lo), np.float32(hi)
    fill = np.float32(fill)
    zero = np.float32(0)
    n = B * C
    _fill(outp, 0, m0, fill)
    _fill(outp, m0 + n * ld, outp.size - m0 - n * ld, fill)
    if pn:
        _fill(outn, 0, m0, zero)
        _fill(outn, m0 + n * ld, outn.size - m0 - n * ld, zero)
    bad = 0
    for pl in prange(n):  # the body is a function: Numba's parfor pass fails on it inline ("cycle in lookup")
        bad += _quantize_plane(xf, pl * H * W, H, W, sx, shift, lo, hi, pn, outp, outn, m0 + pl * ld, ld, S, top,
                               left, fill, mf)
    return bad


@kernel
def wide_conv_rq(X, Xn, ximg, ldx, xg, boff, A, An, ag, ps, aoff, si, nk, groups, nrows, ldo, L, S,
                 bias, div, mul, lo, hi, lo2, hi2, outdiv, oy0, ox0, ys, xs, Hp, Wp, y, mask):
    """`conv_image` on image b's planes (X from b·ximg; with Xn not empty also Xn with weights An, the PN
    negative branch), then `quant.requant` of its planes straight into y (B, O, Ho, Wo), O = groups·nrows:
        u = f32(acc[o, h·S + w] + bias[o]) / div (+ f32(neg[o, h·S + w]) / div)
        v = u·mul; q = R(clip(v, [lo, hi])); y[b, o, oy0 + h·ys, ox0 + w·xs] = clip(q, [lo2, hi2]) / outdiv
    for h < Hp, w < Wp; mask (B, O, Ho, Wo) uint8 out at the same places: 1 where both clamps pass.
    X, Xn, A, An flat float32 (Xn shape (0,): no negative branch); bias (O,) float64."""
    B, O, Ho, Wo = y.shape
    yf, mf = y.reshape(y.size), mask.reshape(mask.size)
    has_neg = Xn.shape[0] > 0
    div, mul, outdiv = np.float32(div), np.float32(mul), np.float32(outdiv)
    lo, hi, lo2, hi2 = np.float32(lo), np.float32(hi), np.float32(lo2), np.float32(hi2)
    for b in prange(B):
        acc = np.empty(O * ldo, np.float32)  # this image's planes: cache-resident until requantized
        conv_image(X, b * ximg, ldx, xg, boff, A, ag, ps, aoff, si, nk, groups, nrows, acc, 0, ldo, L)
        neg = acc
        if has_neg:
            neg = np.empty(O * ldo, np.float32)
            conv_image(Xn, b * ximg, ldx, xg, boff, An, ag, ps, aoff, si, nk, groups, nrows, neg, 0, ldo, L)
        for o in range(O):
            bc = bias[o]
            for h in range(Hp):
                s0 = np.uint64(o * ldo + h * S)
                d0 = ((b * O + o) * Ho + oy0 + h * ys) * Wo + ox0
                if has_neg:
                    for w in range(Wp):
                        u = np.float32(acc[s0 + np.uint64(w)] + bc) / div
                        u = u + neg[s0 + np.uint64(w)] / div
                        v = u * mul
                        q = np.rint(min(max(v, lo), hi))
                        d = np.uint64(d0 + w * xs)
                        mf[d] = np.uint8((v >= lo) & (v <= hi) & (q >= lo2) & (q <= hi2))
                        yf[d] = min(max(q, lo2), hi2) / outdiv
                else:
                    for w in range(Wp):
                        v = (np.float32(acc[s0 + np.uint64(w)] + bc) / div) * mul
                        q = np.rint(min(max(v, lo), hi))
                        d = np.uint64(d0 + w * xs)
                        mf[d] = np.uint8((v >= lo) & (v <= hi) & (q >= lo2) & (q <= hi2))
                        yf[d] = min(max(q, lo2), hi2) / outdiv
    return y


@kernel
def wide_conv_ig(Gm, gimg, ldg, gg, boff, A, An, ag, ps, aoff, si, nk, groups, nrows, ldo, L, S, xmask, sx, dx):
    """The input gradient of image b: `conv_image` of its g planes (from b·gimg) with A (and with An when
    not empty: PN), then `quant.input_grad` straight into dx (B, C, H, W), C = groups·nrows:
        g = dpos[c, h·S + w], or -dneg[c, h·S + w] where xmask < 0 (PN);  dx = g·sx where xmask != 0, else 0
    xmask (B, C, H, W) int8; Gm, A, An flat float32 (An shape (0,): not PN)."""
    B, C, H, W = dx.shape
    df, mf = dx.reshape(dx.size), xmask.reshape(xmask.size)
    pn = An.shape[0] > 0
    sx = np.float32(sx)
    zero = np.float32(0)
    for b in prange(B):
        dp = np.empty(C * ldo, np.float32)
        conv_image(Gm, b * gimg, ldg, gg, boff, A, ag, ps, aoff, si, nk, groups, nrows, dp, 0, ldo, L)
        dn = dp
        if pn:
            dn = np.empty(C * ldo, np.float32)
            conv_image(Gm, b * gimg, ldg, gg, boff, An, ag, ps, aoff, si, nk, groups, nrows, dn, 0, ldo, L)
        for c in range(C):
            for h in range(H):
                s0, d0 = np.uint64(c * ldo + h * S), np.uint64(((b * C + c) * H + h) * W)
                if pn:
                    for w in range(W):
                        m = mf[d0 + np.uint64(w)]
                        g = dp[s0 + np.uint64(w)] if m > 0 else -dn[s0 + np.uint64(w)]
                        df[d0 + np.uint64(w)] = g * sx if m != 0 else zero
                else:
                    for w in range(W):
                        m = mf[d0 + np.uint64(w)]
                        df[d0 + np.uint64(w)] = dp[s0 + np.uint64(w)] * sx if m != 0 else zero
    return dx
