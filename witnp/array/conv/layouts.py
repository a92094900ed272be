"""The two layouts a quantized convolution can run in (`quantized` picks one per call).

`ChannelsLast`: NHWC codes and the direct convolutions of `ops` / `direct`; every geometry
(strides, ConvTranspose2d), and the float64 im2row products past float32's exact range.
`Wide`: a stride-1 Conv2d whose integer sums stay exact in float32, on channels-first wide planes
(`wide`): no transposes, and the input gradient's product is no longer 16 columns narrow. Measured on
the B32 16->32 3x3 32x32 products, one core (in-process medians): forward 2.8 ms against 3.0, input gradient
3.1 against 6.4 (its padding copy included), weight gradient 3.5 against 3.4. Its quantization, forward
(with the requantization) and backward are one kernel each (`kernels.wide_fused`). Float Conv2d layers with few
input channels per group use the same planes and kernels (`WidePlan.float_forward`, `layers.conv`).

A layer calls `quantize` (the input codes), `forward` (y and its mask) and `backward_all` (dW, dx, the bias
sums); `products` and `nchw` give the raw accumulators for the auto-scale statistics. Both layouts give the
same integers; they differ in where the values sit, so a layout is also the ctx's record of how to read its
own buffers in the backward. Shapes: x (B, C, H, W) and y (B, Co, Ho, Wo) NCHW at the edges;
`perm` puts a weight tensor into the layout's row-per-output-channel matrix and `unperm` undoes it.
"""
from __future__ import annotations

import numpy as np

from ... import kernels as K
from .direct import convT_padding
from .ops import (conv_backward, conv_forward, convT_backward, convT_forward, to_nchw, wmat_conv, wmat_convT,
                  wmat_from_conv, wmat_from_convT)
from .wide import WidePlan, supports
from ...memory import empty

__all__ = ["pick_layout", "ChannelsLast", "Wide"]

f32 = np.float32
_EMPTY = np.empty((0, 0), f32)
_EMPTY4 = np.empty((0, 0, 0, 0), f32)


def pick_layout(geo, transposed, x_shape, co, bound):
    """`Wide` for a stride-1 Conv2d whose sums of kh·kw·C/g products are exact in float32 under `bound`
    (= (max|x|, max|w|), None for float operands), else `ChannelsLast`."""
    if not transposed and supports(geo):
        C = x_shape[1]
        if bound is None or geo.kh * geo.kw * (C // geo.groups) <= K.exact_block(*bound):
            return Wide(geo, x_shape, co)
    return ChannelsLast(geo, transposed, x_shape, co)


class ChannelsLast:
    def __init__(self, geo, transposed, x_shape, co):
        self.geo, self.transposed, self.x_shape, self.co = geo, transposed, x_shape, co
        B, _, H, W = x_shape
        Ho, Wo = geo.convT_out(H, W) if transposed else geo.conv_out(H, W)
        self.y_nhwc = (B, Ho, Wo, co)
        self._xpad = (None, None)

    def perm(self, w):
        return wmat_convT(w) if self.transposed else wmat_conv(w)

    def unperm(self, m, shape):
        return wmat_from_convT(m, shape) if self.transposed else wmat_from_conv(m, shape)

    def quantize(self, x, sx, s, lo, hi, pn, pad):
        """Input codes R(clip(x·sx + s, [lo, hi])) (PN: both branches) of x (B, C, H, W) in this layout:
        (codes, the negative branch's or None, mask (B, C, H, W) int8, number of non-finite x). Conv2d's codes
        come padded with `pad` (the code of a zero input); a ConvTranspose2d's unpadded (the weight gradient
        reads them so), and the zero-padded copy its forward reads is made in the same pass and kept here
        until the forward."""
        B, C, H, W = x.shape
        if self.transposed:
            top, bottom, left, right = convT_padding(self.geo, H, W, self.y_nhwc[1:3])
            fill = 0.0
            xu = empty((B, H, W, C))
            xnu = empty((B, H, W, C)) if pn else _EMPTY4
        else:
            top = bottom = self.geo.ph
            left = right = self.geo.pw
            fill = pad
            xu = xnu = _EMPTY4
        xp = empty((B, H + top + bottom, W + left + right, C))
        xnp = empty(xp.shape) if pn else _EMPTY4
        xmask = empty(x.shape, np.int8)  # NCHW order, like x and dx
        bad = K.quantize_nhwc(np.ascontiguousarray(x, dtype=f32), sx, s, lo, hi, pn, xu, xnu, xp, xnp, top, left,
                              fill, xmask, n=x.size)
        if not self.transposed:
            return xp, (xnp if pn else None), xmask, bad
        self._xpad = (xp, xnp if pn else None)
        return xu, (xnu if pn else None), xmask, bad

    def forward(self, xq, xn, wa, wna, pad, bound, bias, div, mul, lo, hi, lo2, hi2, sy, fl=False):
        """The products of codes and weights (+ the PN branch), requantized (fl: rounding down, LayerConfig
        rounding "floor"): (y (B, Co, Ho, Wo), mask)."""
        xpad, self._xpad = self._xpad, (None, None)  # a ConvTranspose2d's padded codes: read once, here
        pos = self.products(xq, wa, pad, bound, xpad[0])
        neg = self.products(xn, wna, 0.0, bound, xpad[1]) if xn is not None else None
        return self.requant(pos, neg, bias, div, mul, lo, hi, lo2, hi2, sy, fl)

    def products(self, xq, wa, pad, bound, xpad=None):
        """Accumulators (B·Ho·Wo, Co) of the layer's product of codes xq and weight matrix wa (a
        ConvTranspose2d's: xpad, the codes padded by `convT_padding`, when at hand)."""
        if self.transposed:
            return convT_forward(xq, wa, self.geo, self.co, bound, xpad).reshape(-1, self.co)
        return conv_forward(xq, wa, self.geo, pad, bound, padded=True)[0]

    def requant(self, pos, neg, bias, div, mul, lo, hi, lo2, hi2, sy, fl=False):
        """`kernels.requant` -> y (B, Co, Ho, Wo) float32 and the mask (in this layout)."""
        B, Ho, Wo, co = self.y_nhwc
        y = empty((B, co, Ho, Wo))
        ymask = empty(pos.shape, np.uint8)
        K.requant_nchw(pos, _EMPTY if neg is None else neg, bias, div, mul, lo, hi, lo2, hi2, sy, y, ymask,
                       bool(fl), n=y.size)
        return y, ymask

    def nchw(self, acc):
        return to_nchw(acc.reshape(self.y_nhwc))

    def backward_all(self, dy, ymask, c, xq, xn, pad, wa, wna, xmask, sx):
        """The layer's backward from dy (B, Co, Ho, Wo): (dW matrix of the codes, of the PN branch or None,
        dx (B, C, H, W) through the input masks, (Co,) sums of the masked dy·c, number of non-finite dy)."""
        B, Ho, Wo, co = self.y_nhwc
        # dy through the output mask, ·c, channels-last; ConvTranspose2d's products read it padded by (ph, pw):
        # written so here, zeros around
        ph, pw = (self.geo.ph, self.geo.pw) if self.transposed else (0, 0)
        ga = empty((B, Ho + 2 * ph, Wo + 2 * pw, co))
        rows = np.empty((B * Ho, co), f32)
        bad = K.grad_to_nhwc(np.ascontiguousarray(dy, dtype=f32), ymask, c, ga, rows, ph, pw, n=ga.size)
        sums = rows.sum(axis=0, dtype=f32)
        if bad:
            return None, None, None, sums, bad
        dwq, dxq = self._branch(ga, xq, pad, wa)
        dwn, dxn = self._branch(ga, xn, 0.0, wna) if xn is not None else (None, None)
        dx = empty(self.x_shape)  # sx·(code gradient) through the input masks, channels-first
        K.input_grad_nhwc(np.ascontiguousarray(dxq, dtype=f32),
                          _EMPTY4 if dxn is None else np.ascontiguousarray(dxn, dtype=f32),
                          xmask.reshape(self.x_shape), sx, dx, n=dx.size)
        return dwq, dwn, dx, sums, bad

    def _branch(self, ga, xq, pad, wa):
        """(dW matrix, input-code gradient channels-last) of one branch."""
        if self.transposed:
            return convT_backward(ga, xq, wa, self.geo, padded=True)
        return conv_backward(ga.reshape(-1, ga.shape[3]), xq, wa, self.geo, pad, padded=True)


class Wide:
    def __init__(self, geo, x_shape, co):
        self.plan = WidePlan(geo, *x_shape, co)
        self.x_shape = x_shape

    def perm(self, w):  # torch's (O, C/g, kh, kw) order: the plan's tables index it directly
        return np.ascontiguousarray(w, dtype=f32).reshape(w.shape[0], -1)

    def unperm(self, m, shape):
        return m.reshape(shape)

    def _w(self, wa):
        p = self.plan
        return wa.reshape(p.O, p.cg, p.geo.kh, p.geo.kw)

    def quantize(self, x, sx, s, lo, hi, pn, pad):
        return self.plan.quantized_planes(x, sx, s, lo, hi, pn, pad)

    def forward(self, xq, xn, wa, wna, pad, bound, bias, div, mul, lo, hi, lo2, hi2, sy, fl=False):
        return self.plan.forward_requant(xq, xn, self._w(wa), None if wna is None else self._w(wna), bias, div, mul,
                                         lo, hi, lo2, hi2, sy, fl)

    def products(self, xq, wa, pad, bound):
        return self.plan.forward(xq, self._w(wa))

    def nchw(self, acc):
        p = self.plan
        return p.unplane(acc, p.ld_o, (p.B, p.O, p.Ho, p.Wo))

    def backward_all(self, dy, ymask, c, xq, xn, pad, wa, wna, xmask, sx):
        p = self.plan
        dwq, dwn, dx, sums, bad = p.backward(dy, ymask, c, xq, xn, self._w(wa), None if wna is None else
                                             self._w(wna), xmask.reshape(self.x_shape), sx)
        return (dwq.reshape(p.O, -1), None if dwn is None else dwn.reshape(p.O, -1), dx,
                sums.sum(axis=0, dtype=f32), bad)
