"""Layers that move values without arithmetic on the chip: Flatten, Reshape, Dropout, MaxPool2d, AvgPool2d.

They act the same in float and quantized mode (pooling and reshaping map codes to codes), except AvgPool2d:
quantized, it is a digital op like Mean (the chip's digital side sums a window and divides by a shift), so its
window kh·kw must be a power of two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..rng import noise_rng
from .base import Layer, check_array, check_finite, check_grad, check_pair
from .digital import DigitalOp, _out_codes, _q

__all__ = ["Flatten", "Reshape", "Dropout", "MaxPool2d", "AvgPool2d"]


@dataclass(slots=True)
class ShapeCtx:
    """A shape op's forward -> backward (reshape, dropout mask, pooling indices and shapes)."""
    shape: Any = None
    keep: Any = None
    idx: Any = None
    pshape: Any = None
    x_shape: Any = None
    mask: Any = None  # quantized AvgPool2d: (input clip mask, output clip mask)


f32 = np.float32


class Flatten(Layer):
    """Flatten dims start_dim..end_dim (torch's defaults: 1..-1): (N, C, H, W) -> (N, C·H·W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1, config=None):
        super().__init__(config)
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x, *, train: bool = False, rng=None):
        x = check_array(self, "x", x, min_ndim=1)
        s, e = self.start_dim % x.ndim, self.end_dim % x.ndim
        if s > e:
            raise ValueError(f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} for x with "
                             f"shape {x.shape}")
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:]), ShapeCtx(shape=x.shape)

    def backward(self, dy, ctx):
        g = check_array(self, "dy", dy, min_ndim=1)
        return g.reshape(ctx.shape)


class Reshape(Layer):
    """Reshape each sample: (N, ...) -> (N, *shape)."""

    def __init__(self, *shape, config=None):
        super().__init__(config)
        self.shape = tuple(int(s) for s in (shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list))
                                            else shape))

    def forward(self, x, *, train: bool = False, rng=None):
        x = check_array(self, "x", x, min_ndim=1)
        try:
            return x.reshape((x.shape[0],) + self.shape), ShapeCtx(shape=x.shape)
        except ValueError:
            raise ValueError(f"Reshape: x with shape {x.shape} cannot be reshaped to (N,) + {self.shape}") from None

    def backward(self, dy, ctx):
        return check_array(self, "dy", dy, min_ndim=1).reshape(ctx.shape)


class Dropout(Layer):
    """Zero each value with probability p in training forwards (inverted scaling 1/(1-p)); identity otherwise.

    Draws through `rng.random` (the forward's rng, else witnp.rng.noise_rng()).
    """

    def __init__(self, p: float = 0.5, config=None):
        super().__init__(config)
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p={p!r}; expected 0 <= p < 1")
        self.p = float(p)

    def forward(self, x, *, train: bool = False, rng=None):
        x = check_array(self, "x", x, min_ndim=0)
        if not train or self.p == 0:
            return x, ShapeCtx(keep=None, shape=x.shape)
        keep = (rng if rng is not None else noise_rng()).random(x.shape) >= self.p
        scale = f32(1.0 / (1.0 - self.p))
        return np.where(keep, x * scale, f32(0)), ShapeCtx(keep=keep, shape=x.shape)

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.shape)
        if ctx.keep is None:
            return g
        return np.where(ctx.keep, g * f32(1.0 / (1.0 - self.p)), f32(0))


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, config=None):
        super().__init__(config)
        name = type(self).__name__
        self.k = check_pair(name, "kernel_size", kernel_size, 1)
        self.s = check_pair(name, "stride", stride if stride is not None else kernel_size, 1)
        self.p = check_pair(name, "padding", padding, 0)
        if self.p[0] > self.k[0] // 2 or self.p[1] > self.k[1] // 2:
            raise ValueError(f"{name}: padding={padding!r} must be at most half the kernel size {self.k}")

    def _windows(self, x, fill):
        name = type(self).__name__
        x = check_array(self, "x", x, ndim=4, what="(N, C, H, W)")
        check_finite(self, "x", x)
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
        H, W = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
        if H < kh or W < kw:
            raise ValueError(f"{name}: kernel {self.k} is larger than the padded input ({H}, {W})")
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        return x, xp.shape, win  # win (N, C, Ho, Wo, kh, kw)

    def _scatter(self, g_win, padded_shape, x_shape):
        """Adjoint of the window view: g_win (N, C, Ho, Wo, kh, kw) -> (N, C, H, W)."""
        (kh, kw), (sh, sw), (ph, pw) = self.k, self.s, self.p
        Ho, Wo = g_win.shape[2:4]
        gp = np.zeros(padded_shape, np.float32)
        for i in range(kh):
            for j in range(kw):
                gp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw] += g_win[:, :, :, :, i, j]
        return gp[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]]


class MaxPool2d(_Pool2d):
    """Max over kh×kw windows (padding with -inf, torch's rule); the gradient goes to the first maximum."""

    def forward(self, x, *, train: bool = False, rng=None):
        x, pshape, win = self._windows(x, -np.inf)
        flat = win.reshape(win.shape[:4] + (-1,))
        idx = flat.argmax(axis=-1)
        y = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        return np.ascontiguousarray(y, dtype=np.float32), ShapeCtx(idx=idx, pshape=pshape, x_shape=x.shape)

    def backward(self, dy, ctx):
        idx = ctx.idx
        g = check_grad(self, dy, idx.shape)
        gw = np.zeros(idx.shape + (self.k[0] * self.k[1],), np.float32)
        np.put_along_axis(gw, idx[..., None], g[..., None], axis=-1)
        return self._scatter(gw.reshape(idx.shape + self.k), ctx.pshape, ctx.x_shape)


class AvgPool2d(_Pool2d, DigitalOp):
    """Mean over kh×kw windows; zero padding counted in the divisor (torch's count_include_pad=True).

    Quantized (a digital op, as Mean): codes Xq = R(clip(x·sx, Y(xb))) (auto-scale over x), y = clip(R(ΣXq /
    n), Y(yb))/sx with n = kh·kw a power of two (the division is a shift; R half to even), at the input scale.
    Straight-through backward: the mean's gradient where neither clip acted."""
    has_y = False
    OPTIONAL_STATS = ("io_max_x",)  # files written before AvgPool2d could be quantized (2026-12-07) lack it

    def __init__(self, kernel_size, stride=None, padding=0, config=None):
        super().__init__(kernel_size, stride, padding, config)
        n = self.k[0] * self.k[1]
        if self.config.use_quantization and n & (n - 1):
            raise ValueError(f"AvgPool2d: kernel_size={kernel_size!r} averages {n} values; quantized, the window "
                             f"kh·kw must be a power of two (the chip divides by a shift), e.g. 2x2 or 4x4")

    def forward(self, x, *, train: bool = False, rng=None):
        if not self.config.use_quantization:
            x, pshape, win = self._windows(x, 0.0)
            y = win.mean(axis=(-2, -1), dtype=np.float32)
            return y, ShapeCtx(shape=y.shape, pshape=pshape, x_shape=x.shape)
        x = check_array(self, "x", x, ndim=4, what="(N, C, H, W)")
        check_finite(self, "x", x)
        sc = self._scales(train)
        xq, mx = _q(x, sc["x"], self.config.x_quant_bits, True)
        _, pshape, win = self._windows(xq, 0.0)
        n = self.k[0] * self.k[1]
        s = win.sum(axis=(-2, -1), dtype=np.float32) / np.float32(n)  # exact: integer sums, a power-of-two n
        y, my = _out_codes(s, sc["x"], self.config.y_quant_bits, True)  # keeps the input scale
        self._record(train, {"x": x})
        return y, ShapeCtx(shape=y.shape, pshape=pshape, x_shape=x.shape, mask=(mx, my))

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.shape) / f32(self.k[0] * self.k[1])
        mask = getattr(ctx, "mask", None)
        if mask is not None:
            g = np.where(mask[1], g, f32(0))
        gw = np.broadcast_to(g[..., None, None], ctx.shape + self.k)
        dx = self._scatter(gw, ctx.pshape, ctx.x_shape)
        return np.where(mask[0], dx, f32(0)).astype(np.float32) if mask is not None else dx
