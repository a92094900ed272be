"""Conv2d and ConvTranspose2d: torch's semantics in float mode, the chip's arithmetic when quantized (chip.md §4).

Weights in torch layout: Conv2d (out, in/groups, kh, kw), ConvTranspose2d (in, out/groups, kh, kw).
Inputs (B, C, H, W) float32, or (C, H, W) unbatched.

witnp's own extension (the vendor refuses these): groups > 1 for quantized ConvTranspose2d. Conv2d with
to_linear and groups > 1 is refused, as by the vendor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..array import matrix as cim
from ..array.conv import quantized as cim_conv
from ..array.conv.wide import WidePlan, supports
from .. import kernels as K
from ..config import LayerConfig
from ..array.conv.ops import (Geometry, channel_sums, column_sums, conv_backward, conv_forward, convT_backward,
                              convT_forward, to_nchw, to_nhwc, wmat_conv, wmat_convT, wmat_from_conv, wmat_from_convT)
from ..rng import init_rng
from .base import check_array, check_finite, check_grad, check_pair, check_flag
from .linear import ArrayLayer

__all__ = ["Conv2d", "ConvTranspose2d", "Conv1d"]


@dataclass(slots=True)
class ConvLayerCtx:
    """Conv2d / ConvTranspose2d forward -> backward. kind "float": run holds the float operands; "linear"
    (to_linear): the array's record of the unfolded patches; "quant": the quantized conv's record
    (`witnp.array.ctx.ConvCtx`)."""
    kind: str
    run: Any
    unbatched: bool
    y_shape: tuple


class _ConvBase(ArrayLayer):
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                 dilation, config, rng):
        super().__init__(config)
        name = type(self).__name__
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: {arg}={v!r}; expected a positive integer")
        check_flag(name, "bias", bias)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        kh, kw = check_pair(name, "kernel_size", kernel_size, 1)
        sh, sw = check_pair(name, "stride", stride, 1)
        ph, pw = check_pair(name, "padding", padding, 0)
        dh, dw = check_pair(name, "dilation", dilation, 1)
        oph, opw = check_pair(name, "output_padding", output_padding, 0)
        for op, s, d, axis in ((oph, sh, dh, "height"), (opw, sw, dw, "width")):
            if op and not (op < s or op < d):
                raise ValueError(f"{name}: output_padding={output_padding!r} must be smaller than stride or "
                                 f"dilation ({axis}: output_padding {op}, stride {s}, dilation {d})")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.geo = Geometry(kh, kw, sh, sw, ph, pw, dh, dw, oph, opw, int(groups))
        cfg = self.config
        if cfg.use_quantization:
            if self.transposed and cfg.handle_neg_in == "Shift":
                raise ValueError(f"{name}: handle_neg_in='Shift' is not supported for ConvTranspose2d "
                                 f"(chip.md §3); expected 'FALSE' or 'PN'")
            if cfg.to_linear and (self.transposed or groups > 1):
                raise ValueError(f"{name}: to_linear=True is supported for Conv2d with groups=1 only "
                                 f"(got {'ConvTranspose2d' if self.transposed else f'groups={groups}'})")
        if self.transposed:
            shape = (self.in_channels, self.out_channels // groups, kh, kw)
            fan_in = shape[1] * kh * kw  # torch computes fan_in from weight.size(1) here
        else:
            shape = (self.out_channels, self.in_channels // groups, kh, kw)
            fan_in = shape[1] * kh * kw
        gen = rng if rng is not None else init_rng()
        bound = 1.0 / math.sqrt(fan_in)
        self._add_param("weight", gen.uniform(-bound, bound, shape))
        if bias:
            self._add_param("bias", gen.uniform(-bound, bound, self.out_channels))
        self._init_array_state()

    def extra_repr(self) -> str:
        g = self.geo
        return (f"{self.in_channels}, {self.out_channels}, kernel_size=({g.kh}, {g.kw}), stride=({g.sh}, "
                f"{g.sw}), padding=({g.ph}, {g.pw}), dilation=({g.dh}, {g.dw}), groups={g.groups}, "
                f"bias={'bias' in self.params}, quant={self.config.use_quantization}")

    def _x_q(self) -> int:
        """q of the input scale (chip.md §5): xb for signed (Conv2d FALSE) and shifted inputs, else xb+1."""
        cfg = self.config
        xb = cfg.x_quant_bits
        signed = not self.transposed and cfg.handle_neg_in == "FALSE" and not cfg.to_linear
        return xb if (signed or cfg.handle_neg_in == "Shift") else xb + 1

    def _check_x(self, x):
        x = check_array(self, "x", x, min_ndim=3, what=f"(B, {self.in_channels}, H, W) or "
                                                          f"({self.in_channels}, H, W)")
        if x.ndim > 4:
            raise ValueError(f"{type(self).__name__}: x has shape {x.shape}; expected (B, {self.in_channels}, H, W)"
                             f" or ({self.in_channels}, H, W)")
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: x has {x.shape[1]} channels (shape {x.shape}); expected "
                             f"in_channels={self.in_channels}")
        return x, unbatched

    def forward(self, x, *, train: bool = False, rng=None):
        """y = layer(x): x (B, C_in, H, W) float -> y (B, C_out, Ho, Wo) float32, and the ctx for backward."""
        x, unbatched = self._check_x(x)
        self._check_size(x.shape)
        W, b = self.params["weight"], self.params.get("bias")
        cfg = self.config
        if not cfg.use_quantization:
            check_finite(self, "x", x)
            if cfg.w_clip is not None:
                np.clip(W, -cfg.w_clip, cfg.w_clip, out=W)
            kind, (y, run) = "float", self._float_forward(x, W, b)
        elif cfg.to_linear:
            kind, (y, run) = "linear", self._linear_forward(x, W, b, train, rng)
        else:
            kind, (y, run) = "quant", self._quant_call(lambda sc, noise, r, want: cim_conv.qconv_forward(
                type(self).__name__, x, W, b, cfg, sc["x"], sc["weight"], sc["y"], self.geo, self.transposed,
                self.out_channels, noise=noise, rng=r, want_stats=want), train, rng)
        return (y[0] if unbatched else y), ConvLayerCtx(kind, run, unbatched, y.shape)

    def backward(self, dy, ctx):
        """dx (same shape as x) float32 from dy (shape of y); adds dW, db into ``grads``."""
        shape = ctx.y_shape[1:] if ctx.unbatched else ctx.y_shape
        g = check_grad(self, dy, shape, finite=ctx.kind == "float")
        g = g.reshape(ctx.y_shape)
        if ctx.kind == "float":
            dx, dw, db = self._float_backward(g, ctx.run)
            self.grads["weight"] += dw.reshape(self.params["weight"].shape)
        elif ctx.kind == "linear":
            dx, db = self._linear_backward(g, ctx.run)
        else:
            dx, dw, db = cim_conv.qconv_backward(g, ctx.run)
            self.grads["weight"] += dw.reshape(self.params["weight"].shape)
        if db is not None:
            self.grads["bias"] += db
        return dx[0] if ctx.unbatched else dx

    def clip_masks(self, ctx):
        """(input mask, output mask) of a quantized forward (0 where clipped; PN's input mask also 0 at x = 0;
        to_linear: the masks of the unfolded patches), or None after a float forward."""
        if ctx.kind == "float":
            return None
        rec = ctx.run if ctx.kind == "quant" else ctx.run["array"]
        return rec.xmask, rec.ymask


# A float stride-1 Conv2d runs on the wide planes when it has at most this many input channels per group:
# there the channels-last products reduce over a few channels per tap and the planes win. Float step
# (forward + backward), one core, wide / channels-last, in-process medians (AMD EPYC family 25 model 17, AVX-512):
# B32 1->8 8x8 0.50, 3->16 32x32 0.22, 1->16 k5 40x40 0.17, 4->16 8x8 0.75, 8->16 16x16 0.46, 8->8 8x8 (B64)
# 0.71, 8->16 4x4 1.13-1.19, 8->32 8x8 1.18; with more channels it goes both ways (16->32 32x32 0.77, 32->64
# 8x8 1.61, 64->64 16x16 1.19), so those keep the channels-last path.
_WIDE_FLOAT_MAX_CG = 8


class Conv2d(_ConvBase):
    """2-D convolution on the array.

    Parameters as torch.nn.Conv2d (int or pair for kernel_size, stride, padding, dilation; groups; bias),
    plus ``config`` (LayerConfig or None for the global default) and ``rng`` (initialisation source).
    Forward: x (B, in_channels, H, W) -> y (B, out_channels, Ho, Wo), Ho = (H + 2p - d(k-1) - 1)//s + 1.
    Quantized: chip.md §4 (FALSE signed input, PN with Wneg and the final int8 clip, Shift, to_linear = Linear on
    (kw, kh, ci)-ordered patches with the bit split and an int8 output).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, config: Optional[LayerConfig] = None, *, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, 0, groups, bias, dilation,
                         config, rng)

    def _check_size(self, shape):
        g = self.geo
        H, W = shape[2:]
        if H + 2 * g.ph < g.dh * (g.kh - 1) + 1 or W + 2 * g.pw < g.dw * (g.kw - 1) + 1:
            raise ValueError(f"Conv2d: kernel ({g.kh}, {g.kw}) with dilation ({g.dh}, {g.dw}) spans "
                             f"({g.dh * (g.kh - 1) + 1}, {g.dw * (g.kw - 1) + 1}), larger than the padded input "
                             f"({H + 2 * g.ph}, {W + 2 * g.pw}) of x with shape {tuple(shape)}")

    def _float_forward(self, x, W, b):
        if supports(self.geo) and self.in_channels // self.geo.groups <= _WIDE_FLOAT_MAX_CG:
            return self._wide_float(x, W, b)
        B = x.shape[0]
        # one padded channels-last copy, shared by the forward and the weight gradient (conv2d would
        # otherwise pad its own copy, and conv2d_dw another)
        xh = to_nhwc(x, (self.geo.ph, self.geo.pw))
        acc, (Ho, Wo) = conv_forward(xh, wmat_conv(W), self.geo, padded=True)
        if b is not None:
            acc += b
        return to_nchw(acc.reshape(B, Ho, Wo, -1)), {"kind": "float", "x": xh, "W": W}

    def _wide_float(self, x, W, b):
        """A stride-1 float Conv2d with at most `_WIDE_FLOAT_MAX_CG` input channels per group, on `WidePlan`'s
        planes: the kernels its quantized stages run anyway, so a float -> QAT -> NAT run compiles one
        convolution family instead of two (the channels-last one was ~6 s of the default run's cold start)."""
        B, C, H, Wd = x.shape
        plan = WidePlan(self.geo, B, C, H, Wd, self.out_channels)
        y, xbuf = plan.float_forward(np.ascontiguousarray(x, dtype=np.float32), W,
                                     None if b is None else np.asarray(b, np.float32))
        return y, {"kind": "wide", "plan": plan, "x": xbuf, "W": W}

    def _float_backward(self, g, ctx):
        if ctx["kind"] == "wide":
            dw, dx, db = ctx["plan"].float_backward(g, ctx["x"], ctx["W"])
            return dx, dw, (db if "bias" in self.params else None)
        g2 = to_nhwc(g).reshape(-1, self.out_channels)
        dw, dx = conv_backward(g2, ctx["x"], wmat_conv(ctx["W"]), self.geo, padded=True)
        db = column_sums(g2) if "bias" in self.params else None
        return to_nchw(dx), wmat_from_conv(dw, ctx["W"].shape), db

    # ---- to_linear: Linear rules on patches whose features are ordered (kw, kh, ci) (chip.md §4)
    def _linear_forward(self, x, W, b, train, rng):
        B = x.shape[0]
        g = self.geo
        Ho, Wo = g.conv_out(*x.shape[2:])
        xh = to_nhwc(x)
        rows = np.empty((B * Ho * Wo, self.in_channels * g.kh * g.kw), np.float32)
        K.im2row(xh, *g.args(Wo, 1, True), 0.0, rows, n=rows.size)
        y2, actx = self._quant_call(lambda sc, noise, r, want: cim.array_forward(
            "Conv2d", rows, wmat_conv(W, jfirst=True), b, self.config, sc["x"], sc["weight"], sc["y"],
            noise=noise, rng=r, want_stats=want, out_clip=(-128, 127)), train, rng)
        return to_nchw(y2.reshape(B, Ho, Wo, -1)), {"array": actx, "x_shape": xh.shape, "Wo": Wo}

    def _linear_backward(self, g, ctx):
        co, geo = self.out_channels, self.geo
        actx = ctx["array"]
        drows, dwq, db = cim.array_backward(to_nhwc(g).reshape(-1, co), actx)
        dwp = np.zeros(dwq.shape, np.float32)
        cim.weight_grad_into(dwp, dwq, actx)
        self.grads["weight"] += wmat_from_conv(dwp, self.params["weight"].shape, jfirst=True)
        dx = np.empty(ctx["x_shape"], np.float32)
        K.row2im(drows, *geo.args(ctx["Wo"], 1, True), dx, n=drows.size)
        return to_nchw(dx), db


class ConvTranspose2d(_ConvBase):
    """2-D transposed convolution on the array (the adjoint of Conv2d's product).

    Parameters as torch.nn.ConvTranspose2d, plus ``config`` and ``rng``. Weight (in, out/groups, kh, kw).
    Forward: x (B, in_channels, H, W) -> y (B, out_channels, Ho, Wo),
    Ho = (H - 1)·s - 2p + d(k - 1) + output_padding + 1. Quantized: chip.md §4 (FALSE unsigned, PN with Wneg).
    """
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, config: Optional[LayerConfig] = None, *,
                 rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, config, rng)

    def _check_size(self, shape):
        Ho, Wo = self.geo.convT_out(*shape[2:])
        if Ho < 1 or Wo < 1:
            raise ValueError(f"ConvTranspose2d: x with shape {tuple(shape)} gives an empty output ({Ho}, {Wo}); "
                             f"padding {self.geo.ph, self.geo.pw} is too large for this input")

    def _float_forward(self, x, W, b):
        xh = to_nhwc(x)
        y = convT_forward(xh, wmat_convT(W), self.geo, self.out_channels)
        if b is not None:
            y += b
        return to_nchw(y), {"kind": "float", "x": xh, "W": W}

    def _float_backward(self, g, ctx):
        dw, dx = convT_backward(to_nhwc(g), ctx["x"], wmat_convT(ctx["W"]), self.geo)
        db = channel_sums(g) if "bias" in self.params else None
        return to_nchw(dx), wmat_from_convT(dw, ctx["W"].shape), db


class Conv1d(Conv2d):
    """1-D convolution over (B, C, T) on the array: the Conv2d with kernel (1, k), stride (1, s), padding (0, p)
    and dilation (1, d) it stands for, with every rule of Conv2d (chip.md §4) and the same bits.

    Parameters as torch.nn.Conv1d (ints for kernel_size, stride, padding, dilation; groups; bias), plus
    ``config`` and ``rng``. Forward: x (B, in_channels, T) or (in_channels, T) -> y (B, out_channels, To),
    To = (T + 2p - d(k-1) - 1)//s + 1. The weight is the Conv2d's, (out_channels, in_channels/groups, 1, k):
    torch's Conv1d weight w (out, in/groups, k) is w[:, :, None, :].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, config: Optional[LayerConfig] = None, *,
                 rng=None):
        for arg, v, lo in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0),
                           ("dilation", dilation, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"Conv1d: {arg}={v!r}; expected an integer >= {lo}")
        super().__init__(in_channels, out_channels, (1, int(kernel_size)), (1, int(stride)), (0, int(padding)),
                         (1, int(dilation)), groups, bias, config, rng=rng)

    def forward(self, x, *, train: bool = False, rng=None):
        """y = layer(x): x (B, in_channels, T) or (in_channels, T) float -> y (B, out_channels, To) float32."""
        x = check_array(self, "x", x, min_ndim=2, what=f"(B, {self.in_channels}, T) or ({self.in_channels}, T)")
        if x.ndim > 3:
            raise ValueError(f"Conv1d: x has shape {x.shape}; expected (B, {self.in_channels}, T) or "
                             f"({self.in_channels}, T)")
        y, ctx = super().forward(x[..., None, :], train=train, rng=rng)
        return y[..., 0, :], ctx

    def backward(self, dy, ctx):
        """dx (shape of x) float32 from dy (shape of y); adds dW, db into ``grads``."""
        dy = np.asarray(dy)
        dx = super().backward(dy[..., None, :] if dy.ndim >= 2 else dy, ctx)
        return dx[..., 0, :]
