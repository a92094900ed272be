"""im2col and its adjoint col2im, in the batched "columns" layout that feeds BLAS without transposes.

cols (B, C·kh·kw, Ho·Wo): row (c, i, j) (c-major) holds, for every output position (oh, ow), the input
value x[b, c, oh·sh - ph + i·dh, ow·sw - pw + j·dw], or `pad` outside the input. Then a convolution is
W (O, C·kh·kw) @ cols[b] -> (O, Ho·Wo), already in NCHW order; groups take contiguous row blocks.

col2im is the exact adjoint (padding positions dropped): it scatters cols back onto (B, C, H, W). It runs in
parallel over (b, c) planes, each written by one iteration only, and accumulates in the output's dtype
(float64 for integer codes keeps sums of many products exact).
"""
import numpy as np
from numba import prange

from ._jit import kernel

__all__ = ["im2col", "col2im"]


@kernel
def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, Wo, pad, cols):
    """x (B, C, H, W) float32 -> cols (B, C·kh·kw, Ho·Wo) float32 out, Ho = cols.shape[2] // Wo."""
    B, C, H, W = x.shape
    Ho = cols.shape[2] // Wo
    pad = np.float32(pad)
    for bc in prange(B * C):
        b = bc // C
        c = bc % C
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oh in range(Ho):
                    ih = oh * sh - ph + i * dh
                    base = oh * Wo
                    if ih < 0 or ih >= H:
                        for ow in range(Wo):
                            cols[b, r, base + ow] = pad
                    else:
                        for ow in range(Wo):
                            iw = ow * sw - pw + j * dw
                            cols[b, r, base + ow] = x[b, c, ih, iw] if (iw >= 0 and iw < W) else pad
    return cols


@kernel
def col2im(cols, kh, kw, sh, sw, ph, pw, dh, dw, Wo, out):
    """out (B, C, H, W) (+)= the adjoint of im2col applied to cols (B, C·kh·kw, Ho·Wo); out is zeroed first."""
    B, C, H, W = out.shape
    Ho = cols.shape[2] // Wo
    for bc in prange(B * C):
        b = bc // C
        c = bc % C
        for ih in range(H):
            for iw in range(W):
                out[b, c, ih, iw] = 0
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                for oh in range(Ho):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    base = oh * Wo
                    for ow in range(Wo):
                        iw = ow * sw - pw + j * dw
                        if iw >= 0 and iw < W:
                            out[b, c, ih, iw] += cols[b, r, base + ow]
    return out
