"""Fused element-wise kernels of the quantized array layers (chip.md §2-§3, §7).

Conventions (llm.c style): outputs are arguments the caller allocated, listed after the inputs; shapes in
the comments; scalars arrive as Python or NumPy numbers and are cast to float32 here, because the chip's
reference computes in float32 and every product below must round exactly as it does. No kernel draws
random numbers or reads globals. Each loop body writes only row ``b`` of its outputs, so ``prange`` over
rows is race-free; the only cross-row results are maxima and counts, which Numba reduces order-free.
Twins in `reference.py`.
"""
import numpy as np
from numba import prange

from ._jit import kernel

__all__ = ["quantize_input", "quantize_weight", "requant", "combine_split", "input_grad", "scale_masked"]


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
    returns (number of non-finite x, max |x| over finite x)
    """
    B, K = x.shape
    sx = np.float32(sx)
    shift = np.float32(shift)
    lo = np.float32(lo)
    hi = np.float32(hi)
    bad = 0
    amax = np.float32(0.0)
    for b in prange(B):
        for k in range(K):
            v = x[b, k]
            if not np.isfinite(v):
                bad += 1
                v = np.float32(0.0)
            amax = max(amax, abs(v))
            if pn:
                p = max(v, np.float32(0.0)) * sx
                n = max(-v, np.float32(0.0)) * sx
                qp = np.rint(min(max(p, lo), hi))
                qn = np.rint(min(max(n, lo), hi))
                m = 0
                if v > 0 and p <= hi:
                    m = 1
                elif v < 0 and n <= hi:
                    m = -1
                mask[b, k] = m
                if split:
                    dp = np.floor(qp / np.float32(256.0))
                    dn = np.floor(qn / np.float32(256.0))
                    xd[b, k] = dp - dn
                    qp = qp - np.float32(256.0) * dp
                    qn = qn - np.float32(256.0) * dn
                if concat:
                    xa[b, k] = qp
                    xa[b, K + k] = qn
                else:
                    xa[b, k] = qp - qn
            else:
                c = v * sx + shift
                q = np.rint(min(max(c, lo), hi))
                mask[b, k] = 1 if (c >= lo and c <= hi) else 0
                if split:
                    d = np.floor(q / np.float32(256.0))
                    xd[b, k] = d
                    q = q - np.float32(256.0) * d
                xa[b, k] = q
    return bad, amax


@kernel
def quantize_weight(w, wclip, sw, wq, mask):
    """Weight codes Wq = R(clip(clip(W, ±wclip)·sw, -128, 127)) and their straight-through mask.

    w    (O, K) float32       float weight
    wclip float               weight clamp (inf: none)
    wq   (O, K) float32 out   int8 codes held in float32
    mask (O, K) uint8 out     1 where |W| <= wclip and W·sw in [-128, 127]
    returns (number of non-finite w, max |w| of the raw, unclamped weight)
    """
    O, K = w.shape
    wc = np.float32(wclip)
    sw = np.float32(sw)
    bad = 0
    amax = np.float32(0.0)
    for o in prange(O):
        for k in range(K):
            v = w[o, k]
            if not np.isfinite(v):
                bad += 1
                v = np.float32(0.0)
            amax = max(amax, abs(v))
            c = min(max(v, -wc), wc) * sw
            wq[o, k] = np.rint(min(max(c, np.float32(-128.0)), np.float32(127.0)))
            mask[o, k] = 1 if (abs(v) <= wc and c >= -128.0 and c <= 127.0) else 0
    return bad, amax


@kernel
def requant(acc, bias, div, mul, lo, hi, outdiv, y, mask):
    """Requantize accumulators: u = f32(acc + bias) / div, v = u·mul, y = R(clip(v, [lo, hi])) / outdiv.

    acc  (B, O) float32|float64 integer (or noisy) accumulator of the analog array
    bias (O,) float64          bias term added to each row (128·Bq, or the noisy bias)
    div, mul                   sx·sw and sy without noise (the vendor's order), G and 1 with noise
    y    (B, O) float32 out    output (outdiv = sy) or the integer code (outdiv = 1)
    mask (B, O) uint8 out      1 where v is inside [lo, hi] (the output clamp's gradient)
    returns max |u|, the auto-scale statistic of y (chip.md §5)
    """
    B, O = acc.shape
    div = np.float32(div)
    mul = np.float32(mul)
    lo = np.float32(lo)
    hi = np.float32(hi)
    outdiv = np.float32(outdiv)
    umax = np.float32(0.0)
    for b in prange(B):
        for o in range(O):
            u = np.float32(acc[b, o] + bias[o]) / div
            umax = max(umax, abs(u))
            v = u * mul
            mask[b, o] = 1 if (v >= lo and v <= hi) else 0
            y[b, o] = np.rint(min(max(v, lo), hi)) / outdiv
    return umax


@kernel
def combine_split(yl, accd, biasd, G, lo, hi, sy, y, mask):
    """Bit-split output: yd = R(f32(accd + biasd) / G) (not clipped), y = clip(yl + yd, [lo, hi]) / sy.

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
            yd = np.rint(np.float32(accd[b, o] + biasd[o]) / G)
            s = yl[b, o] + yd
            mask[b, o] = 1 if (s >= lo and s <= hi) else 0
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
            if m == 0:
                dx[b, k] = 0.0
            elif concat and m < 0:
                dx[b, k] = -(dxa[b, K + k] * sx)
            else:
                dx[b, k] = dxa[b, k] * sx
    return dx


@kernel
def scale_masked(src, mask, c, out, accumulate):
    """out (=|+=) src·c where mask != 0, else 0 (|+ 0). All (R, C); src float32, mask uint8|int8."""
    R, C = src.shape
    c = np.float32(c)
    for r in prange(R):
        for j in range(C):
            v = src[r, j] * c if mask[r, j] != 0 else np.float32(0.0)
            if accumulate:
                out[r, j] += v
            else:
                out[r, j] = v
