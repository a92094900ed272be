"""BatchNorm1d and BatchNorm2d: torch's semantics in float mode; witnp's own quantized form.

Float (torch): training normalizes with the batch mean and biased variance over every axis but the channel
axis 1, and updates running_mean/running_var (unbiased) with `momentum`; inference uses the running ones.
Quantized (witnp's own, the vendor's is unknown; the chip's digital unit applies BN as a per-channel scale
and offset): input codes Xq = R(clip(x·sx, Y(xb))), the float formula on Xq/sx, output
y = clip(R(f·sy), Y(yb))/sy; gradients straight through, masked by both clips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..config import LayerConfig
from .base import check_grad
from .digital import DigitalOp, _out, _q

__all__ = ["BatchNorm1d", "BatchNorm2d"]


@dataclass(slots=True)
class NormCtx:
    """BatchNorm forward -> backward: normalized input, 1/std, the reduction axes and broadcast shape, and the
    quantized forward's clip masks (m: output, mx: input)."""
    xhat: Any = None
    invstd: Any = None
    train: Any = None
    axes: Any = None
    bshape: Any = None
    m: Any = None
    mx: Any = None


f32 = np.float32


class _BatchNorm(DigitalOp):
    ranks = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 config: Optional[LayerConfig] = None):
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{name}: num_features={num_features!r}; expected a positive integer")
        if not (eps > 0 and 0 <= momentum <= 1):
            raise ValueError(f"{name}: eps={eps!r} must be > 0 and momentum={momentum!r} in [0, 1]")
        super().__init__(config)
        self.num_features, self.eps, self.momentum, self.affine = int(num_features), float(eps), float(momentum), \
            bool(affine)
        if affine:
            self._add_param("weight", np.ones(num_features, np.float32))
            self._add_param("bias", np.zeros(num_features, np.float32))
        self.stats["running_mean"] = np.zeros(num_features, np.float32)
        self.stats["running_var"] = np.ones(num_features, np.float32)
        self.stats["num_batches_tracked"] = np.array(0, np.int64)

    def _shape(self, x):
        if x.ndim not in self.ranks or x.shape[1] != self.num_features:
            want = " or ".join(f"{r}-D" for r in self.ranks)
            raise ValueError(f"{type(self).__name__}: x has shape {x.shape}; expected {want} input with "
                             f"{self.num_features} channels on axis 1")
        return tuple(i for i in range(x.ndim) if i != 1), (1, -1) + (1,) * (x.ndim - 2)

    def forward(self, x, *, train: bool = False, rng=None):
        """x (N, C, ...) float -> y same shape, float32; a training forward updates the running statistics."""
        x = self._input(x)
        axes, bshape = self._shape(x)
        quant = self.config.use_quantization
        if quant:
            sc = self._scales(train)
            xq, mx = _q(x, sc["x"], self.config.x_quant_bits, True)
            v = xq / f32(sc["x"])
        else:
            v, mx = x, None
        n = v.size // self.num_features
        if train:
            if n < 2:
                raise ValueError(f"{type(self).__name__}: a training forward needs more than one value per channel, "
                                 f"got x with shape {x.shape}")
            mean = v.mean(axis=axes, dtype=np.float64).astype(np.float32)
            var = v.var(axis=axes, dtype=np.float64).astype(np.float32)
            m = f32(self.momentum)
            st = self.stats
            st["running_mean"] = ((f32(1) - m) * st["running_mean"] + m * mean).astype(np.float32)
            st["running_var"] = ((f32(1) - m) * st["running_var"] + m * var * f32(n / (n - 1))).astype(np.float32)
            st["num_batches_tracked"] = np.array(int(st["num_batches_tracked"]) + 1, np.int64)
        else:
            mean, var = self.stats["running_mean"], self.stats["running_var"]
        invstd = (f32(1) / np.sqrt(var + f32(self.eps))).astype(np.float32)
        xhat = ((v - mean.reshape(bshape)) * invstd.reshape(bshape)).astype(np.float32)
        gamma = self.params["weight"].reshape(bshape) if self.affine else f32(1)
        f = xhat * gamma + (self.params["bias"].reshape(bshape) if self.affine else f32(0))
        ctx = NormCtx(xhat=xhat, invstd=invstd, train=train, axes=axes, bshape=bshape, m=None)
        if not quant:
            return f.astype(np.float32), ctx
        y, my = _out(f.astype(np.float32), sc["y"], self.config.y_quant_bits, True)
        self._record(train, {"x": x, "y": y})
        ctx.mx, ctx.m = mx, my
        return y, ctx

    def backward(self, dy, ctx):
        xhat, axes, bshape = ctx.xhat, ctx.axes, ctx.bshape
        g = check_grad(self, dy, xhat.shape)
        if ctx.m is not None:
            g = np.where(ctx.m, g, f32(0))
        if self.affine:
            self.grads["weight"] += (g * xhat).sum(axis=axes, dtype=np.float32)
            self.grads["bias"] += g.sum(axis=axes, dtype=np.float32)
        gamma = self.params["weight"].reshape(bshape) if self.affine else f32(1)
        dxhat = g * gamma
        invstd = ctx.invstd.reshape(bshape)
        if ctx.train:
            dx = invstd * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                           - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
        else:
            dx = dxhat * invstd
        if ctx.m is not None:
            dx = np.where(ctx.mx, dx, f32(0))
        return dx.astype(np.float32)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, H, W) per channel of an (N, C, H, W) input."""
    ranks = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch normalization per channel of an (N, C) or (N, C, L) input."""
    ranks = (2, 3)
