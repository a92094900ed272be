"""The quantized stride-1 Conv2d's wide-plane passes fused, so that no step-sized intermediate goes through
memory: one kernel quantizes, one computes the forward, one the whole backward.

Measured on the QAT Conv2d B32 16->32 3x3 32x32 step (one core), the element passes around the products
cost about as much as one product: quantize + to_wide, requantizing the accumulator planes (4.3 MB
written, then read back), the output-gradient planes (4.5 MB written, then read by two products) and the
masking of the dx planes. Here:

    quantize_wide   the input codes go straight into the padded wide planes (the NCHW codes are never made)
    wide_conv_rq    each image's accumulator planes (O·ld floats, ~140 KB: in L2) are requantized into y
                    right after the image's products
    wide_backward   per image: its output-gradient planes, then the input gradient through the input mask
                    and the weight gradient's dot products, while those planes are in cache

The step went from 16.9 to 13.1 ms (FALSE; PN 34.1 to 25.2), medians of 40 alternating in-process runs.
Each kernel gives the bits of the unfused passes (`kernels.quant`, `kernels.wide`); the tests compare them.
Loops stay in the kernels' bodies: as calls (one per row, a dozen arrays passed by value) they cost
3-6 ns a value, against about 1.
"""
import numpy as np
from numba import prange

from .._jit import jit, kernel
from ..simd.dot_tile import DC, DR, dot_fma
from ..layout import _fill
from ..quant.quantize import input_code, input_codes_pn, output_code
from .wide import _grad_plane, conv_image

__all__ = ["quantize_wide", "wide_conv_rq", "wide_backward"]


@jit
def _quantize_plane(xf, s_pl, geo, q, pn, outp, outn, o0, mf):
    """One plane of `quantize_wide`: source xf[s_pl:], plane at o0; geo = (H, W, ld, S, top, left), q = (sx,
    shift, lo, hi, fill) (tuples: free in Numba). Returns its non-finite count."""
    H, W, ld, S, top, left = geo
    sx, shift, lo, hi, fill = q
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
                outp[d0 + np.uint64(w)], outn[d0 + np.uint64(w)], mf[s0 + np.uint64(w)] = input_codes_pn(v, sx, lo, hi)
        else:
            for w in range(W):
                v = xf[s0 + np.uint64(w)]
                nb += 0 if abs(v) < np.inf else 1
                outp[d0 + np.uint64(w)], mf[s0 + np.uint64(w)] = input_code(v, sx, shift, lo, hi)
        end = ((top + h + 1) * S + left if h < H - 1 else ld) - (r + W - o0)
        _fill(outp, r + W, end, fill)
        if pn:
            _fill(outn, r + W, end, zero)
    return nb


@kernel(raw=True)
def quantize_wide(x, sx, shift, lo, hi, pn, outp, outn, m0, ld, S, top, left, fill, mask):
    """`quant.quantize.quantize_input` (no split; PN concatenated) written into wide planes (`wide.to_wide`'s layout):
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
    _fill(outp, np.int64(0), m0, fill)  # np.int64: one _fill for every caller
    _fill(outp, m0 + n * ld, outp.size - m0 - n * ld, fill)
    if pn:
        _fill(outn, np.int64(0), m0, zero)
        _fill(outn, m0 + n * ld, outn.size - m0 - n * ld, zero)
    bad = 0
    for pl in prange(n):  # the body is a function: Numba's parfor pass fails on it inline ("cycle in lookup")
        bad += _quantize_plane(xf, pl * H * W, (H, W, ld, S, top, left), (sx, shift, lo, hi, fill), pn, outp, outn,
                               m0 + pl * ld, mf)
    return bad


@kernel(raw=True)
def wide_conv_rq(X, Xn, boff, A, An, aoff, bias, dims, rq, y, mask):
    """Per image b: `wide.conv_image` of its planes (X from b·ximg; with Xn not empty also Xn with weights An,
    the PN negative branch) over ldo pixels, then `quant.requant` of them straight into y (B, O, Ho, Wo),
    O = groups·nrows:
        u = f32(acc[o, h·S + w] + bias[o]) / div (+ f32(neg[o, h·S + w]) / div)
        v = u·mul; q = R(clip(v, [lo, hi])); y[b, o, h, w] = clip(q, [lo2, hi2]) / outdiv
    mask (B, O, Ho, Wo) uint8 out: 1 where both clamps pass.
    X, Xn, A, An flat float32 (Xn shape (0,): no negative branch); bias (O,) float32|float64 (as in
    `quant.requant`); boff, aoff int64 tap tables (`conv_image`).
    dims (11,) int64: ximg, ldx, xg, ag, ps, si, nk, groups, nrows, ldo, S (`conv_image`'s geometry; S the
    plane's row stride); rq (8,) float64: div, mul, lo, hi, lo2, hi2, outdiv (the requantization's constants)
    and 1 to round down (LayerConfig.rounding "floor"), else 0."""
    ximg, ldx, xg, ag, ps, si, nk = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6]
    groups, nrows, ldo, S = dims[7], dims[8], dims[9], dims[10]
    div, mul, lo, hi, lo2, hi2, outdiv, fl = rq[0], rq[1], rq[2], rq[3], rq[4], rq[5], rq[6], rq[7] != 0
    B, O, Ho, Wo = y.shape
    yf, mf = y.reshape(y.size), mask.reshape(mask.size)
    has_neg = Xn.shape[0] > 0
    div, mul, outdiv = np.float32(div), np.float32(mul), np.float32(outdiv)
    lo, hi, lo2, hi2 = np.float32(lo), np.float32(hi), np.float32(lo2), np.float32(hi2)
    for b in prange(B):
        acc = np.empty(O * ldo, np.float32)  # this image's planes: cache-resident until requantized
        geo = (ldx, xg, ag, ps, si, nk, groups, nrows, ldo, ldo)
        # offsets as np.int64, not a literal 0: one compiled conv_image for every caller (a literal argument
        # is a separate specialization, ~0.6 s more of a cold start)
        conv_image(X, b * ximg, boff, A, aoff, acc, np.int64(0), geo)
        neg = acc
        if has_neg:
            neg = np.empty(O * ldo, np.float32)
            conv_image(Xn, b * ximg, boff, An, aoff, neg, np.int64(0), geo)
        for o in range(O):
            bc = bias[o]
            for h in range(Ho):
                s0, d0 = np.uint64(o * ldo + h * S), np.uint64(((b * O + o) * Ho + h) * Wo)
                if has_neg:
                    for w in range(Wo):
                        u = np.float32(acc[s0 + np.uint64(w)] + bc) / div
                        u = u + neg[s0 + np.uint64(w)] / div
                        yf[d0 + np.uint64(w)], mf[d0 + np.uint64(w)] = output_code(u * mul, lo, hi, lo2, hi2, outdiv,
                                                                                   fl)
                else:
                    for w in range(Wo):
                        v = (np.float32(acc[s0 + np.uint64(w)] + bc) / div) * mul
                        yf[d0 + np.uint64(w)], mf[d0 + np.uint64(w)] = output_code(v, lo, hi, lo2, hi2, outdiv, fl)
    return y


@kernel(raw=True)
def wide_backward(g, mask, A, An, xmask, dx, X, Xn, tabs, dims, fs, dw, dwn, chsum):
    """The whole backward of a quantized stride-1 Conv2d, one image at a time, so that the image's output
    gradient planes (~150 KB) are made, read by the input gradient and read by the weight gradient while
    they are in cache (`grad_to_wide`, then the two products `wide_conv` and `wide_dw` went through memory):
      1. `grad_to_wide` for image b into gp (groups·ogp planes of ldg; gsize floats, the tail zero): g·c where
         mask != 0, chsum[b, o] its plane sums;
      2. `wide_conv` of gp with A (and An when not empty: PN), through xmask into dx[b] (`quant.input_grad`);
      3. `wide_dw` of gp against image b of X (and Xn: PN): dw (dwn) accumulate over the images in order.
    g, mask (B, O, Ho, Wo) float32, uint8 (mask empty: none); dx, xmask (B, C, H, W) float32, int8;
    dw, dwn (groups·ogp, Qp) float32 out (dwn shape (0, 0) unless PN). Returns the number of non-finite g.
    tabs int64: the tap tables boff (nb), aoff (na) and xo (Qp) one after the other.
    dims (20,) int64: ldg, S, top, left, groups, ogp, gsize, ag, ps, si, nk, nrows, ldo, L, ximg, xg, gs, nkd,
    nb, na (the planes' and `conv_image`'s geometry, `dot_fma`'s start and length). fs (2,) float64: c (the
    output gradient's scale), sx (the input codes' scale)."""
    ldg, S, top, left, groups, ogp, gsize = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6]
    ag, ps, si, nk, nrows, ldo, L = dims[7], dims[8], dims[9], dims[10], dims[11], dims[12], dims[13]
    ximg, xg, gs, nkd, nb, na = dims[14], dims[15], dims[16], dims[17], dims[18], dims[19]
    boff, aoff, xo = tabs[:nb], tabs[nb:nb + na], tabs[nb + na:]
    c, sx = fs[0], fs[1]
    B, O, Ho, Wo = g.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    og = O // groups
    gf, gm = g.reshape(g.size), mask.reshape(mask.size)
    has_mask = gm.shape[0] > 0
    df, mf = dx.reshape(dx.size), xmask.reshape(xmask.size)
    pn = An.shape[0] > 0
    c = np.float32(c)
    sx = np.float32(sx)
    zero = np.float32(0)
    Qp = xo.shape[0]
    nrb = ogp // DR
    dwf, dwnf = dw.reshape(dw.size), dwn.reshape(dwn.size)
    z = np.zeros(1, np.int64)
    gp = np.zeros(gsize, np.float32)  # padding planes and the tail stay zero
    dp = np.empty(C * ldo, np.float32)
    dn = np.empty(C * ldo if pn else 0, np.float32)
    bad = 0
    for b in range(B):
        for pl in prange(groups * ogp):
            if pl % ogp < og:
                o = (pl // ogp) * og + pl % ogp
                bad += _grad_plane(gf, gm, has_mask, c, gp, pl * ldg, (ldg, S, top, left, Ho, Wo),
                                   (b * O + o) * Ho * Wo, chsum, b, o)
        geo = (ldg, ogp * ldg, ag, ps, si, nk, groups, nrows, ldo, L)
        conv_image(gp, np.int64(0), boff, A, aoff, dp, np.int64(0), geo)
        if pn:
            conv_image(gp, np.int64(0), boff, An, aoff, dn, np.int64(0), geo)
        for ch in range(C):
            for h in range(H):
                s0, d0 = np.uint64(ch * ldo + h * S), np.uint64(((b * C + ch) * H + h) * W)
                if pn:
                    for w in range(W):
                        m = mf[d0 + np.uint64(w)]
                        v = dp[s0 + np.uint64(w)] if m > 0 else -dn[s0 + np.uint64(w)]
                        df[d0 + np.uint64(w)] = v * sx if m != 0 else zero
                else:
                    for w in range(W):
                        m = mf[d0 + np.uint64(w)]
                        df[d0 + np.uint64(w)] = dp[s0 + np.uint64(w)] * sx if m != 0 else zero
        for i in prange(groups * nrb):
            gi, p = i // nrb, (i % nrb) * DR
            for q in range(0, Qp, DC):
                dot_fma(gp, (gi * ogp + p) * ldg + gs, ldg, z, X, b * ximg + gi * xg + gs, z, xo, q, 1, nkd, dwf,
                        (gi * ogp + p) * Qp + q, Qp, b > 0)
                if pn:
                    dot_fma(gp, (gi * ogp + p) * ldg + gs, ldg, z, Xn, b * ximg + gi * xg + gs, z, xo, q, 1, nkd,
                            dwnf, (gi * ogp + p) * Qp + q, Qp, b > 0)
    return bad
