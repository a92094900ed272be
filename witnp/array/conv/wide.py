"""Stride-1 Conv2d on channels-first "wide" planes (`kernels.wide`): forward, input and weight gradients.

A `WidePlan` fixes, for one input shape and geometry, the row length S shared by every buffer, the plane
lengths and the tap offset tables; the buffers it makes are sized so that every read of the kernels (which
run whole vectors past the image edges) stays inside them and finite:

    x planes    (B·C of them, ld_x long) the padded input, after a front margin m0
    acc planes  (B·O, ld_o) the forward's accumulators: output (h, w) at h·S + w
    g planes    (B·G·ogp, ld_g) the output gradient at row ah, column aw, zero elsewhere; ogp pads each
                group's planes to a multiple of the dot tile's rows (the padding planes are zero)
    dx planes   (B·C, ld_dx) the input gradient: (h, w) at h·S + w

The output gradient sits ah = dh·(kh-1) - ph rows (aw columns) into its plane, so the input gradient, a
convolution of it with the flipped kernel, reads only non-negative offsets; S is wide enough that no read
of a kept output wraps into the next row. Weights stay in torch's (O, C/g, kh, kw) layout: the tables
index it directly, forward and flipped.

A layer runs three fused kernels: `quantized_planes`, `forward_requant` and `backward`; `forward` and
`unplane` also give the auto-scale statistics their raw accumulators. `x_planes`, `g_planes_from`,
`input_grad` and `weight_grad` are the same passes unfused, one product each: the tests check the tables
through them against float64 loops, and the fused kernels against them.
"""
from __future__ import annotations

import numpy as np

from ... import kernels as K
from ...kernels.simd.dot_tile import DC, DR
from ...kernels.simd.tile import LANES
from ...memory import empty

__all__ = ["WidePlan", "supports"]

f32 = np.float32
# "no output mask": empty, but 4-D like a real mask, so a float layer and a quantized one share one compiled
# kernel (a 1-D empty array is another type: wide_backward compiled twice, ~2 s of a cold start)
_NO_MASK = np.empty((0, 0, 0, 0), np.uint8)


def _up(n, m):
    return -(-n // m) * m


def supports(geo) -> bool:
    """True when `WidePlan` computes this geometry: stride 1 (any padding, dilation and groups)."""
    return geo.sh == 1 and geo.sw == 1


def _flat(w):
    return np.ascontiguousarray(w, dtype=f32).reshape(-1)


class WidePlan:
    """Offsets and buffers of one stride-1 Conv2d on an input (B, C, H, W) with O output channels."""

    def __init__(self, geo, B, C, H, W, O):
        if not supports(geo):
            raise ValueError(f"WidePlan: stride ({geo.sh}, {geo.sw}); expected (1, 1)")
        kh, kw, dh, dw, ph, pw, G = geo.kh, geo.kw, geo.dh, geo.dw, geo.ph, geo.pw, geo.groups
        self.geo, self.B, self.C, self.H, self.W, self.O = geo, B, C, H, W, O
        self.Ho, self.Wo = Ho, Wo = geo.conv_out(H, W)
        self.cg, self.og = cg, og = C // G, O // G
        self.T = T = kh * kw
        self.ah, self.aw = ah, aw = max(0, dh * (kh - 1) - ph), max(0, dw * (kw - 1) - pw)
        self.S = S = max(W + 2 * pw, W + pw + aw)
        two = 2 * LANES
        self.ld_o = _up(Ho * S, two)
        self.ld_dx = _up(H * S, two)
        reach = (kh - 1) * dh * S + (kw - 1) * dw  # the farthest tap
        self.m0 = _up(aw, LANES)
        self.ld_x = _up((H + 2 * ph) * S, LANES)
        self.x_size = self.m0 + B * C * self.ld_x + self.ld_o + reach + two
        Hg = ah + max(Ho, H + ph)
        self.ogp = ogp = _up(og, DR)
        self.ld_g = _up(max(Hg * S, (ah + Ho) * S + LANES), LANES)
        self.g_planes = B * G * ogp
        self.g_size = self.g_planes * self.ld_g + self.ld_dx + (ph + ah) * S + pw + aw + two
        taps = [(i, j) for i in range(kh) for j in range(kw)]
        self.boff_f = np.array([self.m0 + i * dh * S + j * dw for i, j in taps], np.int64)
        self.boff_dx = np.array([(ph + ah - i * dh) * S + (pw + aw - j * dw) for i, j in taps], np.int64)
        self.aoff = np.arange(T, dtype=np.int64)
        xo = [self.m0 + c * self.ld_x + (i * dh - ah) * S + (j * dw - aw) for c in range(cg) for i, j in taps]
        self.Qp = _up(len(xo), DC)
        self.xo = np.array(xo + [xo[0]] * (self.Qp - len(xo)), np.int64)  # padding columns: dropped after

    # ---- buffers
    def x_planes(self, x, fill=0.0):
        """x (B, C, H, W) float32 -> the padded input planes (filled with `fill`: the code of a zero input)."""
        buf = empty(self.x_size)
        g = self.geo
        K.to_wide(np.ascontiguousarray(x, dtype=f32), buf, self.m0, self.ld_x, self.S, g.ph, g.pw, fill, n=x.size)
        return buf

    def quantized_planes(self, x, sx, shift, lo, hi, pn, fill):
        """x (B, C, H, W) float32 -> its codes in x planes (`kernels.quantize_wide`): (planes, the PN negative
        branch's planes or None, mask (B, C, H, W) int8, number of non-finite x)."""
        buf = empty(self.x_size)
        neg = empty(self.x_size) if pn else np.empty(0, f32)
        mask = empty(x.shape, np.int8)
        g = self.geo
        bad = K.quantize_wide(np.ascontiguousarray(x, dtype=f32), sx, shift, lo, hi, pn, buf, neg, self.m0,
                              self.ld_x, self.S, g.ph, g.pw, fill, mask, n=x.size)
        return buf, (neg if pn else None), mask, bad

    def g_planes_from(self, g, mask, c):
        """Output gradient g (B, O, Ho, Wo) float32 (·c, zero where mask (B, O, Ho, Wo) uint8 is 0; mask None
        for no mask) -> (g planes, (B, O) plane sums, number of non-finite values of g)."""
        buf = empty(self.g_size)
        sums = np.empty((self.B, self.O), f32)
        m = _NO_MASK if mask is None else mask
        bad = K.grad_to_wide(np.ascontiguousarray(g, dtype=f32), m, c, buf, self.ld_g, self.S, self.ah, self.aw,
                             self.geo.groups, self.ogp, sums, n=g.size)
        buf[self.g_planes * self.ld_g:] = 0
        return buf, sums, bad

    # ---- products
    def forward(self, xbuf, w):
        """acc planes (B·O, ld_o) float32 of the convolution of the x planes with w (O, C/g, kh, kw) float32."""
        out = empty(self.B * self.O * self.ld_o)
        cg, og, T, G = self.cg, self.og, self.T, self.geo.groups
        dims = np.array([0, self.C * self.ld_x, self.ld_x, cg * self.ld_x, og * cg * T, cg * T, T, cg, G, og,
                         self.O * self.ld_o, self.ld_o, self.ld_o, self.B], np.int64)
        K.wide_conv(xbuf, self.boff_f, np.ascontiguousarray(w, dtype=f32).reshape(-1), self.aoff, out, dims,
                    n=out.size)
        return out

    def forward_requant(self, xbuf, xneg, w, wneg, bias, div, mul, lo, hi, lo2, hi2, outdiv, fl=False):
        """`forward` (+ the PN branch xneg with wneg, when given) requantized per image into (y, mask), both
        (B, O, Ho, Wo) (float32, uint8), by `kernels.wide_conv_rq` (its docstring has the arithmetic)."""
        shape = (self.B, self.O, self.Ho, self.Wo)
        y, mask = empty(shape), empty(shape, np.uint8)
        cg, og, T, G = self.cg, self.og, self.T, self.geo.groups
        e = np.empty(0, f32)
        dims = np.array([self.C * self.ld_x, self.ld_x, cg * self.ld_x, og * cg * T, cg * T, T, cg, G, og, self.ld_o,
                         self.S], np.int64)
        rq = np.array([div, mul, lo, hi, lo2, hi2, outdiv, float(fl)], np.float64)
        K.wide_conv_rq(xbuf, e if xneg is None else xneg, self.boff_f, _flat(w), e if wneg is None else _flat(wneg),
                       self.aoff, bias, dims, rq, y, mask, n=y.size)
        return y, mask

    def backward(self, g, mask, c, xbuf, xneg, w, wneg, xmask, sx):
        """The fused backward (`kernels.wide_backward`): output gradient g (B, O, Ho, Wo) float32 ·c, zero where
        mask (uint8, same shape; None: no mask) is 0; the x planes (and xneg: PN) and w (wneg) (O, C/g, kh, kw).
        Returns (dW (O, C/g, kh, kw), dW of the PN branch or None, dx (B, C, H, W) = sx·(input-code gradient)
        through xmask (B, C, H, W) int8, (B, O) plane sums of the masked g·c, number of non-finite g)."""
        G, ogp, cg, og, T, S = self.geo.groups, self.ogp, self.cg, self.og, self.T, self.S
        g_img = G * ogp * self.ld_g  # one image's planes, then the tail the input gradient's reads reach
        gsize = g_img + self.ld_dx + (self.geo.ph + self.ah) * S + self.geo.pw + self.aw + 2 * LANES
        pn = xneg is not None
        dw = np.empty((G * ogp, self.Qp), f32)
        dwn = np.empty((G * ogp, self.Qp) if pn else (0, 0), f32)
        dx = empty((self.B, self.C, self.H, self.W))
        sums = np.empty((self.B, self.O), f32)
        e = np.empty(0, f32)
        tabs = np.concatenate([self.boff_dx, self.aoff, self.xo]).astype(np.int64)
        dims = np.array([self.ld_g, S, self.ah, self.aw, G, ogp, gsize, og * cg * T, T, cg * T, og, cg, self.ld_dx,
                         self.ld_dx, self.C * self.ld_x, cg * self.ld_x, self.ah * S, -(-self.Ho * S // LANES),
                         self.boff_dx.size, self.aoff.size], np.int64)
        bad = K.wide_backward(np.ascontiguousarray(g, dtype=f32), _NO_MASK if mask is None else mask,
                              _flat(w), e if wneg is None else _flat(wneg), xmask, dx, xbuf,
                              e if xneg is None else xneg, tabs, dims, np.array([c, sx], np.float64), dw, dwn, sums,
                              n=dx.size)

        def shaped(m):
            return np.ascontiguousarray(m.reshape(G, ogp, self.Qp)[:, :og, :cg * T]).reshape(self.O, cg, self.geo.kh,
                                                                                              self.geo.kw)
        return shaped(dw), (shaped(dwn) if pn else None), dx, sums, bad

    def input_grad(self, gbuf, w):
        """dx planes (B·C, ld_dx) float32: the input gradient from the g planes and w (O, C/g, kh, kw)."""
        out = empty(self.B * self.C * self.ld_dx)
        cg, og, T, G = self.cg, self.og, self.T, self.geo.groups
        dims = np.array([0, G * self.ogp * self.ld_g, self.ld_g, self.ogp * self.ld_g, og * cg * T, T, cg * T, og, G,
                         cg, self.C * self.ld_dx, self.ld_dx, self.ld_dx, self.B], np.int64)
        K.wide_conv(gbuf, self.boff_dx, np.ascontiguousarray(w, dtype=f32).reshape(-1), self.aoff, out, dims,
                    n=out.size)
        return out

    def weight_grad(self, gbuf, xbuf):
        """dW (O, C/g, kh, kw) float32 from the g planes and the x planes."""
        G, ogp, cg, T = self.geo.groups, self.ogp, self.cg, self.T
        out = np.empty((G * ogp, self.Qp), f32)
        nk = -(-self.Ho * self.S // LANES)
        K.wide_dw(gbuf, G * ogp * self.ld_g, self.ld_g, self.ah * self.S, nk, xbuf, self.C * self.ld_x,
                  cg * self.ld_x, self.xo, G, ogp, self.B, out, n=gbuf.size)
        dw = out.reshape(G, ogp, self.Qp)[:, :self.og, :cg * T]
        return np.ascontiguousarray(dw).reshape(self.O, cg, self.geo.kh, self.geo.kw)

    # ---- float convolution: the same planes and fused backward, with no codes, clip or mask
    def float_forward(self, x, w, bias=None):
        """Float Conv2d: x (B, C, H, W), w (O, C/g, kh, kw), bias (O,) or None, all float32 -> (y (B, O, Ho, Wo)
        float32, the x planes, which `float_backward` reads)."""
        xbuf = self.x_planes(x)
        return self.unplane(self.forward(xbuf, w), self.ld_o, (self.B, self.O, self.Ho, self.Wo), bias), xbuf

    def float_backward(self, g, xbuf, w):
        """Gradients of `float_forward` from g (B, O, Ho, Wo) float32: (dW (O, C/g, kh, kw), dx (B, C, H, W),
        the bias gradient (O,)), by the quantized layer's fused kernel with scale 1 and every mask 1 (exact:
        a product by 1 and a select)."""
        ones = np.ones((self.B, self.C, self.H, self.W), np.int8)
        dw, _, dx, sums, _ = self.backward(g, None, 1.0, xbuf, None, w, None, ones, 1.0)
        return dw, dx, sums.sum(axis=0, dtype=f32)

    # ---- back to NCHW
    def unplane(self, buf, ld, shape, bias=None):
        """Wide planes -> (B, C', H', W') float32 (shape), + bias (C',) per channel when given."""
        out = empty(shape)
        K.from_wide(buf, 0, ld, self.S, np.empty(0, f32) if bias is None else np.asarray(bias, f32), out, n=out.size)
        return out
