"""Convolution as batched matrix products on im2col/col2im columns, in float and in exact integer codes.

Geometry and the four products every conv layer needs (shapes for Conv2d; ConvTranspose2d is the adjoint):
    cols  = im2col(x)                              (B, C·kh·kw, Ho·Wo), rows (c, i, j)
    y[g]  = W[g] @ cols[:, rows of g]              (B, O/g, Ho·Wo): NCHW without a transpose
    dW[g] = Σ_b dy[b, g] @ cols[b, rows of g]ᵀ      dcols[rows of g] = W[g]ᵀ @ dy[g];   dx = col2im(dcols)
ConvTranspose2d: cols[rows of g] = W[g]ᵀ @ x[g] (W as (Ci, Co/g·kh·kw)), y = col2im(cols) onto the output
plane; its backward is im2col of dy. Integer codes go through `matmul_exact`, and col2im accumulates integer
sums in float64, so quantized accumulators are exact.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from . import kernels as K

__all__ = ["Geometry", "conv_forward", "conv_backward", "convT_forward", "convT_backward"]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Kernel size, stride, padding, dilation (pairs), output_padding (transposed only) and groups."""
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    ph: int = 0
    pw: int = 0
    dh: int = 1
    dw: int = 1
    oph: int = 0
    opw: int = 0
    groups: int = 1

    def conv_out(self, H: int, W: int) -> Tuple[int, int]:
        """Conv2d output size for an (H, W) input (may be < 1 when the kernel does not fit)."""
        return ((H + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1,
                (W + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1)

    def convT_out(self, H: int, W: int) -> Tuple[int, int]:
        """ConvTranspose2d output size for an (H, W) input."""
        return ((H - 1) * self.sh - 2 * self.ph + self.dh * (self.kh - 1) + self.oph + 1,
                (W - 1) * self.sw - 2 * self.pw + self.dw * (self.kw - 1) + self.opw + 1)

    def args(self, Wo: int):
        return (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, Wo)


def _mm(a, b, bound):
    return a @ b if bound is None else K.matmul_exact(a, b, *bound)


def conv_forward(x, wmat, geo: Geometry, pad=0.0, bound=None):
    """x (B, C, H, W) float32, wmat (O, C/g·kh·kw) -> acc (B, O, Ho·Wo), cols (B, C·kh·kw, Ho·Wo), (Ho, Wo).

    `pad` fills positions outside the input (the code of a zero input); `bound` = (max|x|, max|w|) makes the
    product exact on integer codes (acc may then be float64).
    """
    B, C, H, W = x.shape
    Ho, Wo = geo.conv_out(H, W)
    cols = np.empty((B, C * geo.kh * geo.kw, Ho * Wo), np.float32)
    K.im2col(x, *geo.args(Wo), pad, cols, n=cols.size)
    g, O = geo.groups, wmat.shape[0]
    if g == 1:
        return _mm(wmat, cols, bound), cols, (Ho, Wo)
    kc, og = wmat.shape[1], O // g
    parts = [_mm(wmat[i * og:(i + 1) * og], cols[:, i * kc:(i + 1) * kc], bound) for i in range(g)]
    dt = np.result_type(*parts)
    return np.concatenate(parts, axis=1).astype(dt, copy=False), cols, (Ho, Wo)


def conv_backward(g_acc, cols, wmat, geo: Geometry, x_shape, want_dx=True):
    """Gradients of acc = conv(x, wmat): g_acc (B, O, Ho·Wo) float32 -> dwmat (O, C/g·kh·kw), dx (B, C, H, W)."""
    G, O = geo.groups, wmat.shape[0]
    kc, og = wmat.shape[1], O // G
    dw = np.empty_like(wmat, dtype=np.float32)
    dcols = np.empty(cols.shape, np.float32) if want_dx else None
    for i in range(G):
        ga = g_acc[:, i * og:(i + 1) * og]
        cg = cols[:, i * kc:(i + 1) * kc]
        dw[i * og:(i + 1) * og] = np.matmul(ga, cg.transpose(0, 2, 1)).sum(axis=0)
        if want_dx:
            dcols[:, i * kc:(i + 1) * kc] = wmat[i * og:(i + 1) * og].T @ ga
    if not want_dx:
        return dw, None
    Wo = geo.conv_out(*x_shape[2:])[1]
    dx = np.empty(x_shape, np.float32)
    K.col2im(dcols, *geo.args(Wo), dx, n=dcols.size)
    return dw, dx


def convT_forward(x, wmat, geo: Geometry, co: int, bound=None):
    """x (B, Ci, H, W), wmat (Ci, Co/g·kh·kw) -> acc (B, Co, Ho, Wo): float64 with `bound` (exact), else float32."""
    B, Ci, H, W = x.shape
    Ho, Wo = geo.convT_out(H, W)
    G = geo.groups
    cig, kc = Ci // G, wmat.shape[1]
    xf = x.reshape(B, Ci, H * W)
    cols = np.empty((B, G * kc, H * W), np.float64 if bound is not None else np.float32)
    for i in range(G):
        cols[:, i * kc:(i + 1) * kc] = _mm(wmat[i * cig:(i + 1) * cig].T, xf[:, i * cig:(i + 1) * cig],
                                           bound)
    out = np.empty((B, co, Ho, Wo), cols.dtype)
    K.col2im(cols, *geo.args(W), out, n=cols.size)
    return out


def convT_backward(g_acc, x, wmat, geo: Geometry, want_dx=True):
    """Gradients of acc = convT(x, wmat): g_acc (B, Co, Ho, Wo) float32 -> dwmat (Ci, Co/g·kh·kw), dx (B, Ci, H, W)."""
    B, Ci, H, W = x.shape
    G = geo.groups
    cig, kc = Ci // G, wmat.shape[1]
    dcols = np.empty((B, G * kc, H * W), np.float32)
    K.im2col(np.ascontiguousarray(g_acc, dtype=np.float32), *geo.args(W), 0.0, dcols, n=dcols.size)
    xf = x.reshape(B, Ci, H * W)
    dw = np.empty(wmat.shape, np.float32)
    dx = np.empty((B, Ci, H * W), np.float32) if want_dx else None
    for i in range(G):
        dc = dcols[:, i * kc:(i + 1) * kc]
        xg = xf[:, i * cig:(i + 1) * cig]
        dw[i * cig:(i + 1) * cig] = np.matmul(xg, dc.transpose(0, 2, 1)).sum(axis=0)
        if want_dx:
            dx[:, i * cig:(i + 1) * cig] = wmat[i * cig:(i + 1) * cig] @ dc
    return dw, (dx.reshape(B, Ci, H, W) if want_dx else None)
