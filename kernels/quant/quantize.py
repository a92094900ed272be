"""Fused element-wise kernels of the quantized array layers (chip.md §2-§3, §7).

Conventions (llm.c style): outputs are arguments the caller allocated, listed after the inputs; shapes in
the comments; scalars arrive as Python or NumPy numbers and are cast to float32 here, because the chip's
reference computes in float32 and every product below must round exactly as it does. No kernel draws
random numbers or reads globals. Each loop body writes only row ``b`` of its outputs, so ``prange`` over
rows is race-free; the only cross-row result is a count of non-finite inputs, an integer sum.
Twins in tests/kernels/reference.py.
"""
import numpy as np
from numba import prange

from .._jit import jit, kernel
from ..layout import transpose_blocks

__all__ = ["quantize_input", "quantize_weight", "quantize_bias", "requant", "requant_nchw", "combine_split", "input_grad", "input_grad_nhwc", "scale_masked"]


@jit(inline="always")
def input_code(v, sx, shift, lo, hi):
    """One input value's code R(clip(v·sx + shift, [lo, hi])) (FALSE, Shift) and its straight-through mask
    (int8: 1 inside the clip). All float32. Inlined in Numba's IR, so the callers' loops still vectorize."""
    c = v * sx + shift
    return np.rint(min(max(c, lo), hi)), np.int8((c >= lo) & (c <= hi))


@jit(inline="always")
def input_codes_pn(v, sx, lo, hi):
    """PN: the codes R(clip(relu(±v)·sx, [lo, hi])) of both branches and the mask (int8: +1 where v > 0 and
    the positive code is unclipped, -1 likewise for the negative branch, 0 elsewhere: relu'(0) = 0)."""
    zero = np.float32(0.0)
    p = max(v, zero) * sx
    n = max(-v, zero) * sx
    return (np.rint(min(max(p, lo), hi)), np.rint(min(max(n, lo), hi)),
            np.int8((v > zero) & (p <= hi)) - np.int8((v < zero) & (n <= hi)))


@jit(inline="always")
def round_code(v, fl):
    """The arrays' division by G rounded: half to even (R), or down with fl (LayerConfig.rounding "floor").
    The one home of this rule in the kernels (requantization, the bit split, the GRU's arrays)."""
    return np.floor(v) if fl else np.rint(v)


@jit(inline="always")
def output_code(v, lo, hi, lo2, hi2, outdiv, fl):
    """The output rule of the requantization (chip.md §2, §4), for v = the accumulator already divided and
    scaled: q = R(clip(v, [lo, hi])) (fl: ⌊clip(v, [lo, hi])⌋, LayerConfig.rounding "floor"); returns
    (clip(q, [lo2, hi2]) / outdiv, mask), mask (uint8) 1 where both clamps pass (the straight-through gradient's
    mask). All float32; inlined in Numba's IR, so the callers' loops still vectorize. The one home of this
    rule for every requantizing kernel."""
    q = round_code(min(max(v, lo), hi), fl)
    return min(max(q, lo2), hi2) / outdiv, np.uint8((v >= lo) & (v <= hi) & (q >= lo2) & (q <= hi2))


@jit
def _row_plain(x, b, sx, shift, lo, hi, xa, xd, mask, split):
    nb = 0
    c256 = np.float32(256.0)
    inv256 = np.float32(1.0 / 256.0)  # exact: ⌊q/256⌋ = ⌊q·2^-8⌋
    if split:
        for k in range(x.shape[1]):
            v = x[b, k]
            nb += 0 if abs(v) < np.inf else 1
            q, mask[b, k] = input_code(v, sx, shift, lo, hi)
            d = np.floor(q * inv256)
            xd[b, k] = d
            xa[b, k] = q - c256 * d
    else:
        for k in range(x.shape[1]):
            v = x[b, k]
            nb += 0 if abs(v) < np.inf else 1
            xa[b, k], mask[b, k] = input_code(v, sx, shift, lo, hi)
    return nb


@jit
def _row_pn_signed(x, b, sx, hi, xa, mask):
    # the relu branches are exclusive, so pos - neg = R(clip(x·sx, -hi, hi)) (-(v·sx) = (-v)·sx exactly)
    nb = 0
    for k in range(x.shape[1]):
        v = x[b, k]
        nb += 0 if abs(v) < np.inf else 1
        c = v * sx
        xa[b, k] = np.rint(min(max(c, -hi), hi))
        mask[b, k] = np.int8(abs(c) <= hi) * (np.int8(v > 0) - np.int8(v < 0))
    return nb


@jit
def _row_pn(x, b, sx, lo, hi, concat, split, xa, xd, mask):
    nb = 0
    K = x.shape[1]
    c256 = np.float32(256.0)
    inv256 = np.float32(1.0 / 256.0)
    for k in range(K):
        v = x[b, k]
        nb += 0 if abs(v) < np.inf else 1
        qp, qn, mask[b, k] = input_codes_pn(v, sx, lo, hi)
        if split:
            dp = np.floor(qp * inv256)
            dn = np.floor(qn * inv256)
            xd[b, k] = dp - dn
            qp = qp - c256 * dp
            qn = qn - c256 * dn
        if concat:
            xa[b, k] = qp
            xa[b, K + k] = qn
        else:
            xa[b, k] = qp - qn
    return nb


@kernel
def quantize_input(x, sx, shift, lo, hi, pn, concat, split, xa, xd, mask):
    """Input codes of an array layer: Xq = R(clip(x·sx + shift, [lo, hi])), PN branches, bit split.

    x    (B, K) float32      raw input
    xa   (B, Ka) float32 out analog codes: Xq, or its low byte Xl = Xq - 256·⌊Xq/256⌋ when `split`;
                             Ka = 2K with PN in the concatenated layout [pos | neg] (`concat`), else K
                             (PN not concatenated: pos - neg, a signed code)
    xd   (B, K) float32 out  digital high part ⌊Xq/256⌋ (pos - neg with PN); written only when `split`
    mask (B, K) int8 out     straight-through factor of dXq/dx / sx: 1 inside the clip (FALSE, Shift);
                             PN: +1 where x > 0 and the positive code is unclipped, -1 for the negative
                             branch, 0 elsewhere (relu'(0) = 0)
    returns the number of non-finite x (the outputs are then meaningless; callers refuse the input)
    The row loops are branch-free selects so LLVM vectorizes them; the flags choose a loop per row.
    """
    B = x.shape[0]
    sx = np.float32(sx)
    shift = np.float32(shift)
    lo = np.float32(lo)
    hi = np.float32(hi)
    bad = 0
    for b in prange(B):
        if not pn:
            bad += _row_plain(x, b, sx, shift, lo, hi, xa, xd, mask, split)
        elif concat or split or lo != 0:
            bad += _row_pn(x, b, sx, lo, hi, concat, split, xa, xd, mask)
        else:
            bad += _row_pn_signed(x, b, sx, hi, xa, mask)
    return bad


@kernel
def quantize_weight(w, wclip, sw, wq, mask):
    """Weight codes Wq = R(clip(clip(W, ±wclip)·sw, -128, 127)) and their straight-through mask.

    w    (O, K) float32       float weight
    wclip float               weight clamp (inf: none)
    wq   (O, K) float32 out   int8 codes held in float32
    mask (O, K) uint8 out     1 where |W| <= wclip and W·sw in [-128, 127]
    returns the number of non-finite w
    """
    O, K = w.shape
    wc = np.float32(wclip)
    sw = np.float32(sw)
    lo = np.float32(-128.0)
    hi = np.float32(127.0)
    bad = 0
    for o in prange(O):
        nb = 0
        for k in range(K):
            v = w[o, k]
            nb += 0 if abs(v) < np.inf else 1
            c = min(max(v, -wc), wc) * sw
            wq[o, k] = np.rint(min(max(c, lo), hi))
            mask[o, k] = np.uint8((abs(v) <= wc) & (c >= lo) & (c <= hi))
        bad += nb
    return bad


@kernel
def quantize_bias(b, wq, P, s, bias_d, N, split, ba, bmask, bd):
    """Bias codes in units of 128 (chip.md §2, §3), in the vendor's float32 order.

    b      (O,) float32 float bias (zeros when the layer has none)
    wq     (O, K) float32 weight codes (their row sums carry the Shift correction s·ΣWq)
    P      f32(sx·sw);  s: the Shift offset in codes (0 otherwise);  bias_d (O,) float32;  N: bias_row_N
    ba     (O,) float32 out analog bias code: Bq = R(clip((f32(b·P) - s·ΣWq)/128, -128N, 127N)), or with
                            `split` Bl = R(clip((R(f32(b·P)/128)·128 - 128·Bd - s·ΣWq)/128, -128N, 127N))
    bmask  (O,) uint8 out   1 where that clamp passes
    bd     (O,) float32 out digital bias Bd = R(f32(bias_d·P)/128) (split only; not clipped)
    """
    O, K = wq.shape
    P = np.float32(P)
    s = np.float32(s)
    c128 = np.float32(128.0)
    lo = np.float32(-128.0 * N)
    hi = np.float32(127.0 * N)
    for o in prange(O):
        corr = np.float32(0.0)
        if s != 0:
            ws = np.float32(0.0)
            for k in range(K):
                ws += wq[o, k]  # integers: exact in any order below 2^24
            corr = s * ws
        t = b[o] * P
        if split:
            d = np.rint((bias_d[o] * P) / c128)
            bd[o] = d
            pre = (np.rint(t / c128) * c128 - c128 * d - corr) / c128
        else:
            pre = (t - corr) / c128
        ba[o] = np.rint(min(max(pre, lo), hi))
        bmask[o] = np.uint8((pre >= lo) & (pre <= hi))


@kernel
def requant(acc, neg, bias, div, mul, lo, hi, lo2, hi2, outdiv, y, mask, fl):
    """Requantize accumulators (chip.md §2, §4):
        v = (f32(acc + bias)/div [+ f32(neg)/div]) · mul;  r = R(clip(v, [lo, hi]));  y = clip(r, [lo2, hi2]) / outdiv

    acc  (R, C) float32|float64 integer (or noisy) accumulator; the bias is carried here
    neg  (R, C) float32|float64 the negative PN branch of a convolution, divided separately (or shape (0, 0))
    bias (C,) float32|float64  per column (output channel); float32 only when exactly the vendor's float64
                               values (`witnp.array.matrix.bias_operand`: the float32 sum then rounds as theirs does)
    div, mul                   sx·sw and sy without noise (the vendor's order), G and 1 with noise
    lo2, hi2                   the second clip after rounding (Conv2d's int8 clip), else lo, hi
    y    (R, C) float32 out    output (outdiv = sy) or the integer code (outdiv = 1)
    mask (R, C) uint8 out      1 where both clamps pass (the straight-through gradient's mask)
    fl   bool                  round down (LayerConfig.rounding "floor") instead of half to even
    """
    R, C = acc.shape
    has_neg = neg.shape[0] > 0
    div = np.float32(div)
    mul = np.float32(mul)
    lo = np.float32(lo)
    hi = np.float32(hi)
    lo2 = np.float32(lo2)
    hi2 = np.float32(hi2)
    outdiv = np.float32(outdiv)
    for r in prange(R):
        for c in range(C):
            u = np.float32(acc[r, c] + bias[c]) / div
            if has_neg:
                u = u + np.float32(neg[r, c]) / div
            y[r, c], mask[r, c] = output_code(u * mul, lo, hi, lo2, hi2, outdiv, fl)


@kernel(raw=True)
def requant_nchw(acc, neg, bias, div, mul, lo, hi, lo2, hi2, outdiv, y, mask, fl):
    """`requant` of channels-last accumulators with y written channels-first, in one pass (it was `requant`
    and then a transpose of y, a second pass over the output):
        v = (f32(acc[r, c] + bias[c])/div [+ f32(neg[r, c])/div]) · mul;  q = R(clip(v, [lo, hi]))
        y[b, c, h, w] = clip(q, [lo2, hi2]) / outdiv,  r = (b·H + h)·W + w;  mask[r, c] = 1 where both clamps pass
    acc, neg (B·H·W, C) float32|float64 (neg shape (0, 0): none); bias (C,) float32|float64 (as in `requant`);
    y (B, C, H, W) float32 out; mask (B·H·W, C) uint8 out (channels-last, as the backward's `grad_to_nhwc`
    reads it).
    Each (image, row) is requantized into a row buffer (contiguous: it vectorizes) and then transposed in
    8 x 8 register blocks (`layout.transpose_blocks`; the element loop it replaces read t at stride C)."""
    B, C, H, W = y.shape
    has_neg = neg.shape[0] > 0
    div, mul, outdiv = np.float32(div), np.float32(mul), np.float32(outdiv)
    lo, hi, lo2, hi2 = np.float32(lo), np.float32(hi), np.float32(lo2), np.float32(hi2)
    af = acc.reshape(acc.size)
    nf = neg.reshape(neg.size)
    mf = mask.reshape(mask.size)
    yf = y.reshape(y.size)
    bt = np.empty(W * C, bias.dtype)  # the bias along a row, so the loop below is flat
    for k in range(W * C):
        bt[k] = bias[k % C]
    for b in prange(B):
        t = np.empty(W * C, np.float32)  # once per image: one per row cost ~0.1 ms of ~0.5 (B32 32x32 16ch)
        for h in range(H):
            r0 = np.uint64((b * H + h) * W * C)
            if has_neg:
                for k in range(W * C):
                    u = np.float32(af[r0 + np.uint64(k)] + bt[k]) / div
                    u = u + np.float32(nf[r0 + np.uint64(k)]) / div
                    t[k], mf[r0 + np.uint64(k)] = output_code(u * mul, lo, hi, lo2, hi2, outdiv, fl)
            else:
                for k in range(W * C):
                    v = (np.float32(af[r0 + np.uint64(k)] + bt[k]) / div) * mul
                    t[k], mf[r0 + np.uint64(k)] = output_code(v, lo, hi, lo2, hi2, outdiv, fl)
            transpose_blocks(t, 0, C, yf, (b * C * H + h) * W, H * W, W, C)
    return y


@kernel
def combine_split(yl, accd, biasd, G, lo, hi, sy, y, mask, fl):
    """Bit-split output: yd = R(f32(accd + biasd) / G) (not clipped; fl: ⌊f32(accd + biasd) / G⌋),
    y = clip(yl + yd, [lo, hi]) / sy.

    yl   (B, O) float32        analog part, already an integer code clipped to [lo, hi]
    accd (B, O) float32|float64 256·Xd·Wqᵀ, the digital accumulator
    biasd (O,) float64         128·Bd
    y    (B, O) float32 out; mask (B, O) uint8 out: 1 where yl + yd is inside [lo, hi]
    """
    B, O = yl.shape
    G = np.float32(G)
    lo = np.float32(lo)
    hi = np.float32(hi)
    sy = np.float32(sy)
    for b in prange(B):
        for o in range(O):
            yd = round_code(np.float32(accd[b, o] + biasd[o]) / G, fl)
            s = yl[b, o] + yd
            mask[b, o] = np.uint8((s >= lo) & (s <= hi))
            y[b, o] = min(max(s, lo), hi) / sy


@kernel
def input_grad(dxa, mask, sx, concat, dx):
    """dx from the gradient of the input codes, through the clip and relu masks of `quantize_input`.

    dxa  (B, Ka) float32  dL/dXq; Ka = 2K in the PN concatenated layout (`concat`), else K
    mask (B, K) int8      from quantize_input
    dx   (B, K) float32 out: sx·dxa·mask (concat: +pos branch where mask = 1, -neg branch where -1)
    """
    B, K = dx.shape
    sx = np.float32(sx)
    for b in prange(B):
        for k in range(K):
            m = mask[b, k]
            if concat:
                g = dxa[b, k] if m > 0 else -dxa[b, K + k]
            else:
                g = dxa[b, k]
            dx[b, k] = g * sx if m != 0 else np.float32(0.0)
    return dx


@kernel(raw=True)
def input_grad_nhwc(dpos, dneg, mask, sx, dx):
    """`input_grad` from channels-last code gradients straight into channels-first dx, in one pass (it was a
    transpose of each branch and then `input_grad`):
        g = dpos[b, h, w, c], or -dneg[b, h, w, c] where mask < 0 (PN);  dx[b, c, h, w] = g·sx where mask != 0
    dpos, dneg (B, H, W, C) float32 (dneg shape (0, 0, 0, 0): not PN); mask (B, C, H, W) int8;
    dx (B, C, H, W) float32 out.
    Per image: the code gradients channels-first through the 8 x 8 register transposes
    (`layout.transpose_blocks`), then masked and scaled in one flat run. The element loop it replaces
    gathered at stride C: B32 32ch 16x16 on one core 0.36 -> 0.17 ms, PN 2.2 -> 0.25 ms (min of 40)."""
    B, C, H, W = dx.shape
    pn = dneg.shape[0] > 0
    sx = np.float32(sx)
    zero = np.float32(0.0)
    pf, nf, mf, df = dpos.reshape(dpos.size), dneg.reshape(dneg.size), mask.reshape(mask.size), dx.reshape(dx.size)
    n = C * H * W
    for b in prange(B):
        tp = np.empty(n, np.float32)
        transpose_blocks(pf, b * n, C, tp, 0, H * W, H * W, C)
        s0 = np.uint64(b * n)  # unsigned flat indices: no wraparound test in the loops
        if pn:
            tn = np.empty(n, np.float32)
            transpose_blocks(nf, b * n, C, tn, 0, H * W, H * W, C)
            for k in range(n):
                m = mf[s0 + np.uint64(k)]
                v = tp[k] if m >= 0 else -tn[k]
                df[s0 + np.uint64(k)] = v * sx if m != 0 else zero
        else:
            for k in range(n):
                df[s0 + np.uint64(k)] = tp[k] * sx if mf[s0 + np.uint64(k)] != 0 else zero
    return dx


@kernel
def scale_masked(src, mask, c, out, accumulate):
    """out (=|+=) src·c where mask != 0, else 0 (|+ 0). All (R, C); src float32, mask uint8|int8.

    returns the number of non-finite src values (an upstream gradient with NaN/inf is refused by callers)
    """
    R, C = src.shape
    c = np.float32(c)
    zero = np.float32(0.0)
    bad = 0
    for r in prange(R):
        nb = 0
        if accumulate:
            for j in range(C):
                v = src[r, j]
                nb += 0 if abs(v) < np.inf else 1
                out[r, j] += v * c if mask[r, j] != 0 else zero
        else:
            for j in range(C):
                v = src[r, j]
                nb += 0 if abs(v) < np.inf else 1
                out[r, j] = v * c if mask[r, j] != 0 else zero
        bad += nb
    return bad
