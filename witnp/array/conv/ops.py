"""Convolution products on channels-last images, in float and in exact integer codes.

Images are NHWC inside (x_nhwc (B, H, W, C)); weights are permuted once per call so the features of a
group's kernel offset are contiguous (`wmat_conv`, `wmat_convT`). The products every conv layer needs:
    Conv2d:   acc = conv(x, W);  dW = conv_dw(x, acc_grad);  dx = conv_transpose(acc_grad, W)
    ConvT:    acc = conv_transpose(x, W);  dx = conv(acc_grad, W);  dW = conv_dw(acc_grad, x)
all as direct convolutions (`direct`). Integer codes whose sums could leave float32's exact range
(kh·kw·C/g·max|x|·max|w| >= 2^24) go through im2row/row2im with K-blocked `matmul_exact` and float64 sums
instead, so quantized accumulators are always exact.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

from . import direct as conv_direct
from ... import kernels as K
from ...memory import empty

__all__ = ["Geometry", "wmat_conv", "wmat_from_conv", "wmat_convT", "wmat_from_convT", "to_nhwc", "to_nchw",
           "column_sums", "channel_sums", "conv_forward", "conv_backward", "convT_forward", "convT_backward"]


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


def to_nhwc(a, pad_hw=(0, 0), fill=0.0):
    """(B, C, H, W) -> C-contiguous (B, H + 2·ph, W + 2·pw, C), padded with `fill` (pad_hw = (ph, pw))."""
    B, C, H, W = a.shape
    ph, pw = pad_hw
    out = empty((B, H + 2 * ph, W + 2 * pw, C), a.dtype)
    fn = K.nchw_to_nhwc_f32 if a.dtype == np.float32 else K.nchw_to_nhwc  # register blocks for float32
    fn(np.ascontiguousarray(a), ph, pw, fill, out, n=out.size)
    return out


def to_nchw(a, out=None):
    """(B, H, W, C) -> C-contiguous (B, C, H, W) (written into `out` when given)."""
    B, H, W, C = a.shape
    out = empty((B, C, H, W), a.dtype) if out is None else out
    K.nhwc_to_nchw(np.ascontiguousarray(a), out, n=out.size)
    return out


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


def column_sums(a):
    """a (M, N) float32 -> (N,) float32 column sums, as one BLAS product (NumPy's axis-0 reduction of a
    thin array was 5x slower here)."""
    return np.ones(a.shape[0], np.float32) @ a


def channel_sums(a):
    """a (B, C, H, W) float32 -> (C,) float32 sums over batch and plane (the bias gradient of a conv)."""
    B, C = a.shape[:2]
    return (a.reshape(B, C, -1) @ np.ones(a[0, 0].size, np.float32)).sum(axis=0, dtype=np.float32)


def _mm(a, b, bound):
    return a @ b if bound is None else K.matmul_exact(a, b, *bound)


def _cat(parts):
    dt = np.result_type(*parts)
    return np.concatenate(parts, axis=1).astype(dt, copy=False)


def conv_forward(x_nhwc, wmat, geo: Geometry, pad=0.0, bound=None, padded=False):
    """x_nhwc (B, H, W, C) float32, wmat (O, kh·kw·C/g) -> acc (B·Ho·Wo, O), (Ho, Wo).

    `pad` fills positions outside the image (the code of a zero input); padded=True: x_nhwc is already
    padded by (ph, pw) with it (`to_nhwc(x, (ph, pw), pad)`). `bound` = (max|x|, max|w|) makes the product
    exact on integer codes: a direct convolution when each output's kh·kw·C/g products fit float32 exactly,
    else im2row and K-blocked products (acc then float64).
    """
    if bound is None or geo.kh * geo.kw * (x_nhwc.shape[3] // geo.groups) <= K.exact_block(*bound):
        return conv_direct.conv2d(x_nhwc, wmat, geo, pad, padded=padded)
    if padded:
        x_nhwc = np.ascontiguousarray(x_nhwc[:, geo.ph:x_nhwc.shape[1] - geo.ph, geo.pw:x_nhwc.shape[2] - geo.pw])
    B, H, W, C = x_nhwc.shape
    Ho, Wo = geo.conv_out(H, W)
    G = geo.groups
    rows = np.empty((B * Ho * Wo, C * geo.kh * geo.kw), np.float32)
    K.im2row(x_nhwc, *geo.args(Wo, G), pad, rows, n=rows.size)
    kc, og = wmat.shape[1], wmat.shape[0] // G
    return _cat([_mm(rows[:, i * kc:(i + 1) * kc], wmat[i * og:(i + 1) * og].T, bound) for i in range(G)]), (Ho, Wo)


def conv_backward(g_acc, x_nhwc, wmat, geo: Geometry, pad=0.0, padded=False):
    """Gradients of acc = conv(x, wmat) (x padded with `pad`; `padded` as in `conv_forward`):
    g_acc (B·Ho·Wo, O) float32 -> dwmat (O, kh·kw·C/g), dx_nhwc (B, H, W, C)."""
    B, H, W, _ = x_nhwc.shape
    if padded:
        H, W = H - 2 * geo.ph, W - 2 * geo.pw
    Ho, Wo = geo.conv_out(H, W)
    g_acc = np.ascontiguousarray(g_acc, dtype=np.float32)
    dw = conv_direct.conv2d_dw(x_nhwc, g_acc, geo, pad, padded=padded)
    dx = conv_direct.conv_transpose(g_acc.reshape(B, Ho, Wo, -1), wmat, geo, (H, W))
    return dw, dx


def convT_forward(x_nhwc, wmat, geo: Geometry, co: int, bound=None, xpad=None):
    """x_nhwc (B, H, W, Ci), wmat (Ci, kh·kw·Co/g) -> acc_nhwc (B, Ho, Wo, Co): exact on integer codes with
    `bound` (a direct convolution when each output's products fit float32 exactly, else float64 sums).
    xpad: x_nhwc padded by `direct.convT_padding`, when the caller has it (the direct path reads it)."""
    B, H, W, Ci = x_nhwc.shape
    Ho, Wo = geo.convT_out(H, W)
    G = geo.groups
    if bound is None or geo.kh * geo.kw * (Ci // G) <= K.exact_block(*bound):
        return conv_direct.conv_transpose(x_nhwc, wmat, geo, (Ho, Wo), xp=xpad)
    cig = Ci // G
    xr = x_nhwc.reshape(B * H * W, Ci)
    cols = _cat([_mm(xr[:, i * cig:(i + 1) * cig], wmat[i * cig:(i + 1) * cig], bound) for i in range(G)])
    cols = np.ascontiguousarray(cols, dtype=np.float64)
    out = np.empty((B, Ho, Wo, co), cols.dtype)
    K.row2im(cols, *geo.args(W, G), out, n=cols.size)
    return out


def convT_backward(g_nhwc, x_nhwc, wmat, geo: Geometry, padded=False):
    """Gradients of acc = convT(x, wmat): g_nhwc (B, Ho, Wo, Co) -> dwmat (Ci, kh·kw·Co/g), dx_nhwc (B, H, W, Ci).
    padded: g_nhwc is already (B, Ho + 2·ph, Wo + 2·pw, Co), zero-padded (`kernels.grad_to_nhwc` writes it so).

    The input gradient is the Conv2d of g with the same weight matrix; the weight gradient is Conv2d's with
    the roles of input and output gradient swapped."""
    B, H, W, Ci = x_nhwc.shape
    gp = g_nhwc if padded else conv_direct.padded_input(g_nhwc, geo)  # one padded copy for both products
    dx, _ = conv_direct.conv2d(gp, wmat, geo, padded=True, out_hw=(H, W))
    dw = conv_direct.conv2d_dw(gp, np.ascontiguousarray(x_nhwc, dtype=np.float32).reshape(B * H * W, Ci), geo,
                               padded=True, out_hw=(H, W))
    return dw, dx.reshape(B, H, W, Ci)
