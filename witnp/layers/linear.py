"""Linear: y = x·Wᵀ + b in float mode, the chip's array arithmetic when quantized (chip.md §2, §3, §5-§7)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..array import matrix as cim
from ..array.ctx import ArrayCtx
from ..config import LayerConfig
from ..noise import noise_model
from ..quant import ScaleObserver
from ..rng import init_rng, noise_rng
from .base import Layer, check_array, check_finite, check_grad, check_flag

__all__ = ["Linear", "ArrayLayer"]


class ArrayLayer(Layer):
    """Common state of the compute-in-memory layers: auto-scale observer over x, weight and y, and noise."""

    def _init_array_state(self):
        cfg = self.config
        self.observer = ScaleObserver(
            type(self).__name__, self.stats, ("x", "weight", "y"),
            init_scales={"x": cfg.scale_x, "weight": cfg.scale_weight, "y": cfg.scale_y},
            init_io_max={"x": cfg.x_quant_bits, "weight": 8, "y": cfg.y_quant_bits},
            step=cfg.auto_scale_update_step, enabled=cfg.use_quantization and cfg.use_auto_scale)
        self.noise = noise_model(cfg.noise_model, cfg.noise_level)

    def _x_q(self) -> int:
        """q of the input scale (chip.md §5): xb+1 for unsigned inputs (FALSE, PN), xb for Shift."""
        xb = self.config.x_quant_bits
        return xb if self.config.handle_neg_in == "Shift" else xb + 1

    def _qs(self) -> dict:
        return {"x": self._x_q(), "weight": 8, "y": self.config.y_quant_bits}

    @property
    def scales(self) -> dict:
        """The current scales {"x", "weight", "y"} (the user's until auto-scale derives them)."""
        return dict(self.observer.scales)

    def begin_epoch(self) -> None:
        self.observer.begin_epoch()

    def pin_io_max(self, names=("x", "y")) -> None:
        """Keep io_max of `names` (a calibration strategy's choice) through training: epochs do not reset it
        and training forwards do not re-collect it (`ScaleObserver.pin`); the weight keeps max |W|."""
        self.observer.pin(names, self._qs())

    def _quant_call(self, fn, train, rng):
        """Run one quantized forward `fn(scales, noise, rng, want_stats) -> (y, ctx, stats)` under the
        auto-scale schedule: scales for this forward first, statistics recorded after a training forward."""
        qs = self._qs()
        sc = self.observer.scales_for_forward(train, qs)
        y, ctx, st = fn(sc, self.noise if self.noise.active else None,
                        rng if rng is not None else noise_rng(), self.observer.wants_record(train))
        if train:
            self.observer.after_train_forward(st or {}, qs)
        return y, ctx


class Linear(ArrayLayer):
    """Fully connected compute-in-memory layer.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        With a bias, ``params["bias"]`` (out,) float32; the chip carries it on ``bias_row_N`` array rows.
    config : LayerConfig or None
        None takes `witnp.get_default_config()`.
    rng : numpy Generator, optional
        Initialisation source (torch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias);
        defaults to `witnp.rng.init_rng()`.

    Forward: x (..., in) float32 -> y (..., out) float32 (any leading batch dims). Quantized outputs are
    multiples of 1/scale_y. Backward adds into ``grads["weight"]`` (out, in) and ``grads["bias"]`` (out,).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 config: Optional[LayerConfig] = None, *, rng=None):
        super().__init__(config)
        for arg, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Linear: {arg}={v!r}; expected a positive integer")
        check_flag("Linear", "bias", bias)
        self.in_features, self.out_features = int(in_features), int(out_features)
        gen = rng if rng is not None else init_rng()
        bound = 1.0 / math.sqrt(self.in_features)
        self._add_param("weight", gen.uniform(-bound, bound, (self.out_features, self.in_features)))
        if bias:
            self._add_param("bias", gen.uniform(-bound, bound, self.out_features))
        if isinstance(self.config.bias_d, tuple):
            self.config.bias_d_array(self.out_features)  # a per-output bias_d must fit: refuse it now
        self._init_array_state()

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}, "
                f"quant={self.config.use_quantization}")

    def forward(self, x, *, train: bool = False, rng=None):
        """y = layer(x). x (..., in_features) float -> y (..., out_features) float32, and the ctx for backward."""
        x = check_array(self, "x", x, last=self.in_features)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        W, b = self.params["weight"], self.params.get("bias")
        if not self.config.use_quantization:
            check_finite(self, "x", x2)
            if self.config.w_clip is not None:  # float mode clamps the stored weight in place (chip.md §7)
                np.clip(W, -self.config.w_clip, self.config.w_clip, out=W)
            y2 = x2 @ W.T
            if b is not None:
                y2 += b
            ctx = LinearCtx(False, lead + (self.out_features,), x=x2, W=W)
        else:
            y2, actx = self._quant_call(lambda sc, noise, r, want: cim.array_forward(
                "Linear", x2, W, b, self.config, sc["x"], sc["weight"], sc["y"], noise=noise, rng=r,
                want_stats=want), train, rng)
            ctx = LinearCtx(True, lead + (self.out_features,), array=actx)
        return y2.reshape(ctx.y_shape), ctx

    def backward(self, dy, ctx):
        """dx (..., in_features) float32 from dy (..., out_features); adds dW, db into ``grads``."""
        g = check_grad(self, dy, ctx.y_shape, finite=not ctx.quant).reshape(-1, self.out_features)
        if not ctx.quant:
            dx = g @ ctx.W
            self.grads["weight"] += g.T @ ctx.x
            if "bias" in self.grads:
                self.grads["bias"] += g.sum(axis=0)
        else:
            actx = ctx.array
            dx, dwq, db = cim.array_backward(g, actx)
            cim.weight_grad_into(self.grads["weight"], dwq, actx)
            if db is not None:
                self.grads["bias"] += db
        return dx.reshape(ctx.y_shape[:-1] + (self.in_features,))

    def clip_masks(self, ctx):
        """(input mask, output mask) of a quantized forward (the straight-through masks: 0 where the value was
        clipped, and PN's input mask also 0 at x = 0), or None after a float forward."""
        return (ctx.array.xmask, ctx.array.ymask) if ctx.quant else None


@dataclass(slots=True)
class LinearCtx:
    """Linear.forward -> backward: the float operands, or the array's record (`witnp.array.ctx.ArrayCtx`)."""
    quant: bool
    y_shape: tuple
    x: Optional[np.ndarray] = None       # (B, in) float32 (float mode)
    W: Optional[np.ndarray] = None       # (out, in) float32 (float mode)
    array: Optional[ArrayCtx] = None     # quantized mode
