"""im2row and its adjoint row2im on channels-last (NHWC) images: the layout BLAS runs fastest on here.

rows (B·Ho·Wo, G·kh·kw·Cg): row (b, oh, ow) holds, for each group g and kernel offset (i, j), the Cg input
channels of group g at x[b, oh·sh - ph + i·dh, ow·sw - pw + j·dw, :], or `pad` outside the image. Feature
index ((g·kh + i)·kw + j)·Cg + c, or with `jfirst` ((g·kw + j)·kh + i)·Cg + c: the (kw, kh, ci) patch order
of the vendor's to_linear. A convolution is then rows @ Wᵀ with W permuted to (O, kh, kw, Cg) per group.

Used where a patch matrix is the point (Conv2d with to_linear: the Linear rules on patches) and for
quantized products whose integer sums could leave float32's exact range; every other convolution runs
direct (`direct.py`) without building this matrix.

row2im is the exact adjoint (padding positions dropped). It runs in parallel over images, each written by
one iteration only, and accumulates in the output's dtype (float64 keeps sums of integer products exact).
"""
import numpy as np
from numba import prange

from .._jit import kernel

__all__ = ["im2row", "row2im"]


@kernel
def im2row(x, kh, kw, sh, sw, ph, pw, dh, dw, Wo, groups, jfirst, pad, rows):
    """x (B, H, W, C) float32 -> rows (B·Ho·Wo, C·kh·kw) float32 out, Ho = rows.shape[0] // (B·Wo)."""
    B, H, W, C = x.shape
    Ho = rows.shape[0] // (B * Wo)
    cg = C // groups
    pad = np.float32(pad)
    for bo in prange(B * Ho):
        b = bo // Ho
        oh = bo % Ho
        for ow in range(Wo):
            r = bo * Wo + ow
            for g in range(groups):
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        a = (g * kw + j) * kh + i if jfirst else (g * kh + i) * kw + j
                        f0 = a * cg
                        if ih >= 0 and ih < H and iw >= 0 and iw < W:
                            for c in range(cg):
                                rows[r, f0 + c] = x[b, ih, iw, g * cg + c]
                        else:
                            for c in range(cg):
                                rows[r, f0 + c] = pad
    return rows


@kernel
def row2im(rows, kh, kw, sh, sw, ph, pw, dh, dw, Wo, groups, jfirst, out):
    """out (B, H, W, C) = the adjoint of im2row applied to rows (B·Ho·Wo, C·kh·kw); out is overwritten."""
    B, H, W, C = out.shape
    Ho = rows.shape[0] // (B * Wo)
    cg = C // groups
    for b in prange(B):
        for ih in range(H):
            for iw in range(W):
                for c in range(C):
                    out[b, ih, iw, c] = 0
        for oh in range(Ho):
            for ow in range(Wo):
                r = (b * Ho + oh) * Wo + ow
                for g in range(groups):
                    for i in range(kh):
                        ih = oh * sh - ph + i * dh
                        if ih < 0 or ih >= H:
                            continue
                        for j in range(kw):
                            iw = ow * sw - pw + j * dw
                            if iw < 0 or iw >= W:
                                continue
                            a = (g * kw + j) * kh + i if jfirst else (g * kh + i) * kw + j
                            f0 = a * cg
                            for c in range(cg):
                                out[b, ih, iw, g * cg + c] += rows[r, f0 + c]
    return out
