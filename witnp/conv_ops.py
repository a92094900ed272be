"""Convolution as matrix products on channels-last rows (im2row/row2im), in float and in exact integer codes.

Images are NHWC inside (x_nhwc (B, H, W, C)); weights are permuted once per call so the features of a
group's kernel offset are contiguous (`wmat_conv`, `wmat_convT`). The products every conv layer needs:
    Conv2d:   rows = im2row(x)  (B·Ho·Wo, C·kh·kw);  acc[:, g] = rows[:, g] @ Wg ᵀ  (B·Ho·Wo, O/g)
              dW_g = acc_grad[:, g]ᵀ @ rows[:, g];   drows[:, g] = acc_grad[:, g] @ Wg;  dx = row2im(drows)
    ConvT:    cols[:, g] = x_rows[:, g] @ Wg  (B·H·W, kh·kw·Co/g);  y = row2im(cols) onto the output plane;
              its backward is im2row of dy.
Integer codes go through `matmul_exact`, and row2im accumulates integer sums in float64, so quantized
accumulators are exact.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from . import kernels as K

__all__ = ["Geometry", "wmat_conv", "wmat_from_conv", "wmat_convT", "wmat_from_convT", "to_nhwc", "to_nchw",
           "conv_forward", "conv_backward", "convT_forward", "convT_backward"]


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
        """Conv2d output size for an (H, W) input (< 1 when the kernel does not fit)."""
        return ((H + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1,
                (W + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1)

    def convT_out(self, H: int, W: int) -> Tuple[int, int]:
        """ConvTranspose2d output size for an (H, W) input."""
        return ((H - 1) * self.sh - 2 * self.ph + self.dh * (self.kh - 1) + self.oph + 1,
                (W - 1) * self.sw - 2 * self.pw + self.dw * (self.kw - 1) + self.opw + 1)

    def args(self, Wo: int, groups: int, jfirst: bool = False):
        return (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.dh, self.dw, Wo, groups, jfirst)


def to_nhwc(a):
    """(B, C, H, W) -> C-contiguous (B, H, W, C)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def to_nchw(a):
    """(B, H, W, C) -> C-contiguous (B, C, H, W)."""
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def wmat_conv(w, jfirst=False):
    """Conv2d weight (O, Cg, kh, kw) -> (O, kh·kw·Cg) in im2row's feature order ((kw, kh, Cg) with jfirst)."""
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1) if jfirst else w.transpose(0, 2, 3, 1)).reshape(
        w.shape[0], -1)


def wmat_from_conv(m, shape, jfirst=False):
    """Inverse of `wmat_conv`: (O, kh·kw·Cg) -> the weight layout `shape` (O, Cg, kh, kw)."""
    O, cg, kh, kw = shape
    if jfirst:
        return m.reshape(O, kw, kh, cg).transpose(0, 3, 2, 1)
    return m.reshape(O, kh, kw, cg).transpose(0, 3, 1, 2)


def wmat_convT(w):
    """ConvTranspose2d weight (Ci, Co/g, kh, kw) -> (Ci, kh·kw·Co/g), row2im's feature order per group."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def wmat_from_convT(m, shape):
    Ci, cog, kh, kw = shape
    return m.reshape(Ci, kh, kw, cog).transpose(0, 3, 1, 2)


def _mm(a, b, bound):
    return a @ b if bound is None else K.matmul_exact(a, b, *bound)


def _cat(parts):
    dt = np.result_type(*parts)
    return np.concatenate(parts, axis=1).astype(dt, copy=False)


def conv_forward(x_nhwc, wmat, geo: Geometry, pad=0.0, bound=None, jfirst=False):
    """x_nhwc (B, H, W, C) float32, wmat (O, kh·kw·C/g) -> acc (B·Ho·Wo, O), rows (B·Ho·Wo, C·kh·kw), (Ho, Wo).

    `pad` fills positions outside the image (the code of a zero input); `bound` = (max|x|, max|w|) makes the
    product exact on integer codes (acc may then be float64).
    """
    B, H, W, C = x_nhwc.shape
    Ho, Wo = geo.conv_out(H, W)
    G = geo.groups
    rows = np.empty((B * Ho * Wo, C * geo.kh * geo.kw), np.float32)
    K.im2row(x_nhwc, *geo.args(Wo, G, jfirst), pad, rows, n=rows.size)
    if G == 1:
        return _mm(rows, wmat.T, bound), rows, (Ho, Wo)
    kc, og = wmat.shape[1], wmat.shape[0] // G
    return _cat([_mm(rows[:, i * kc:(i + 1) * kc], wmat[i * og:(i + 1) * og].T, bound) for i in range(G)]), \
        rows, (Ho, Wo)


def conv_backward(g_acc, rows, wmat, geo: Geometry, x_shape, jfirst=False):
    """Gradients of acc = conv(x, wmat): g_acc (B·Ho·Wo, O) float32 -> dwmat (O, kh·kw·C/g), dx_nhwc (B, H, W, C)."""
    G = geo.groups
    kc, og = wmat.shape[1], wmat.shape[0] // G
    if G == 1:
        dw = g_acc.T @ rows
        drows = g_acc @ wmat
    else:
        dw = np.empty(wmat.shape, np.float32)
        drows = np.empty(rows.shape, np.float32)
        for i in range(G):
            ga = g_acc[:, i * og:(i + 1) * og]
            dw[i * og:(i + 1) * og] = ga.T @ rows[:, i * kc:(i + 1) * kc]
            drows[:, i * kc:(i + 1) * kc] = ga @ wmat[i * og:(i + 1) * og]
    Wo = geo.conv_out(*x_shape[1:3])[1]
    dx = np.empty(x_shape, np.float32)
    K.row2im(drows, *geo.args(Wo, G, jfirst), dx, n=drows.size)
    return dw, dx


def convT_forward(x_nhwc, wmat, geo: Geometry, co: int, bound=None):
    """x_nhwc (B, H, W, Ci), wmat (Ci, kh·kw·Co/g) -> acc_nhwc (B, Ho, Wo, Co): float64 with `bound` (exact)."""
    B, H, W, Ci = x_nhwc.shape
    Ho, Wo = geo.convT_out(H, W)
    G = geo.groups
    cig = Ci // G
    xr = x_nhwc.reshape(B * H * W, Ci)
    if G == 1:
        cols = _mm(xr, wmat, bound)
    else:
        cols = _cat([_mm(xr[:, i * cig:(i + 1) * cig], wmat[i * cig:(i + 1) * cig], bound) for i in range(G)])
    cols = np.ascontiguousarray(cols, dtype=np.float64 if bound is not None else np.float32)
    out = np.empty((B, Ho, Wo, co), cols.dtype)
    K.row2im(cols, *geo.args(W, G), out, n=cols.size)
    return out


def convT_backward(g_nhwc, x_nhwc, wmat, geo: Geometry):
    """Gradients of acc = convT(x, wmat): g_nhwc (B, Ho, Wo, Co) -> dwmat (Ci, kh·kw·Co/g), dx_nhwc (B, H, W, Ci)."""
    B, H, W, Ci = x_nhwc.shape
    G = geo.groups
    cig, kc = Ci // G, wmat.shape[1]
    drows = np.empty((B * H * W, G * kc), np.float32)
    K.im2row(np.ascontiguousarray(g_nhwc, dtype=np.float32), *geo.args(W, G), 0.0, drows, n=drows.size)
    xr = x_nhwc.reshape(B * H * W, Ci)
    if G == 1:
        dw = xr.T @ drows
        dx = drows @ wmat.T
    else:
        dw = np.empty(wmat.shape, np.float32)
        dx = np.empty((B * H * W, Ci), np.float32)
        for i in range(G):
            dc = drows[:, i * kc:(i + 1) * kc]
            dw[i * cig:(i + 1) * cig] = xr[:, i * cig:(i + 1) * cig].T @ dc
            dx[:, i * cig:(i + 1) * cig] = dc @ wmat[i * cig:(i + 1) * cig].T
    return dw, dx.reshape(B, H, W, Ci)
