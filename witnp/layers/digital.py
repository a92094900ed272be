"""Digital ops around the arrays (chip.md §8): activations, element-wise and reduction ops.

Float mode is the plain formula (torch semantics), except Divide = clip(x1/x2, -8, 8). Quantized
(use_quantization=True), inputs are codes Xq = R(clip(x·s, Y(xb))) (U(xb) for Sqrt) and outputs
y = clip(R(f·sy), Y(yb))/sy (U(yb) for Sigmoid and Sqrt), f evaluated in float32 as the vendor does.
Gradients: rounding straight through, masked by the input clip and by the output clip (on the value before
rounding). Mean, Add and Cat have no f' factor: their gradient is passed through (Mean ÷ n) under the same
masks (the vendor's Add masks both, measured on the golden vectors).

witnp's own quantized Divide (the vendor's is unknown): q1 = R(clip(x1·sl, Y(xb))), q2 likewise with sr,
v = clip((q1/sl)/(q2/sr), -8, 8) with v = 8·sign(q1) where q2 = 0, y = clip(R(v·sy), Y(yb))/sy.
ReLU needs no requantization (it maps codes to codes) and is the plain relu in both modes.
Auto-scale (chip.md §5): io_max of each input and of the output on the array layers' schedule, with
q = xb for signed inputs, xb+1 for unsigned ones, yb for signed outputs, yb+1 for unsigned ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .. import kernels as K
from ..config import LayerConfig
from ..quant import ScaleObserver, code_range
from .base import Layer, check_array, check_finite, check_grad

__all__ = ["DigitalOp", "ReLU", "Sigmoid", "Tanh", "GELU", "PReLU", "Sqrt", "Mean", "Add", "Mul", "Divide", "Cat"]


@dataclass(slots=True)
class DigitalCtx:
    """A digital op's forward -> backward (every op of the family uses the fields it needs; the rest stay None).
    m: the straight-through clip mask(s) of a quantized forward (None in float mode or where nothing clips)."""
    v: Any = None
    m: Any = None
    a: Any = None
    b: Any = None
    mw: Any = None
    x: Any = None
    pos: Any = None
    shape: Any = None
    axes: Any = None
    n: Any = None
    sizes: Any = None
    d: Any = None


f32 = np.float32


def _q(x, s, bits, signed):
    """Codes R(clip(x·s, Y(bits) or U(bits))) and the clip mask (bool), float32."""
    lo, hi = code_range(bits, signed)
    c = x * f32(s)
    return np.rint(np.clip(c, f32(lo), f32(hi))), (c >= lo) & (c <= hi)


def _out(f, sy, bits, signed):
    """y = clip(R(f·sy), range)/sy and the output clip's mask on f·sy (before rounding)."""
    return _out_codes((f * f32(sy)).astype(np.float32), sy, bits, signed)


def _out_codes(v, sy, bits, signed):
    """y = clip(R(v), range)/sy for v already in output units, and the clip's mask on v."""
    lo, hi = code_range(bits, signed)
    return (np.clip(np.rint(v), f32(lo), f32(hi)) / f32(sy)).astype(np.float32), (v >= lo) & (v <= hi)


class DigitalOp(Layer):
    """Base of the digital ops: an auto-scale observer over the inputs (and output) and the quant helpers."""

    inputs: Sequence[str] = ("x",)
    signed_in = True
    signed_out = True
    has_y = True  # Mean keeps its input's scale and records no output statistic

    def __init__(self, config: Optional[LayerConfig] = None):
        super().__init__(config)
        cfg = self.config
        names = tuple(self.inputs) + (("weight",) if "weight" in self._param_names() else ()) + (
            ("y",) if self.has_y else ())
        init = {"x": cfg.scale_x, "x1": cfg.scale_x_left, "x2": cfg.scale_x_right, "y": cfg.scale_y,
                "weight": cfg.scale_weight}
        io0 = {"x": cfg.x_quant_bits, "x1": cfg.x_quant_bits, "x2": cfg.x_quant_bits, "y": cfg.y_quant_bits,
               "weight": 8}
        self.observer = ScaleObserver(type(self).__name__, self.stats, names, {n: init[n] for n in names},
                                      {n: io0[n] for n in names}, cfg.auto_scale_update_step,
                                      cfg.use_quantization and cfg.use_auto_scale)

    def _param_names(self):
        return ()

    def _qs(self):
        xb, yb = self.config.x_quant_bits, self.config.y_quant_bits
        q = {n: xb if self.signed_in else xb + 1 for n in self.inputs}
        q.update(weight=8, y=yb if self.signed_out else yb + 1)
        return q

    def begin_epoch(self) -> None:
        self.observer.begin_epoch()

    def _scales(self, train):
        return self.observer.scales_for_forward(train, self._qs())

    def _record(self, train, maxima):
        if train and self.observer.enabled:
            self.observer.after_train_forward({k: f32(np.abs(v).max()) if np.size(v) else f32(0)
                                               for k, v in maxima.items()}, self._qs())

    def _input(self, x, arg="x"):
        x = check_array(self, arg, x, min_ndim=0, what="a floating-point array")
        check_finite(self, arg, x)
        return x


class _Unary(DigitalOp):
    """y = f(x) element-wise; subclasses give f and f' in float32."""

    def f(self, v):  # pragma: no cover - interface
        raise NotImplementedError

    def df(self, v):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, x, *, train: bool = False, rng=None):
        """x any shape, float -> y same shape, float32."""
        x = self._input(x)
        if not self.config.use_quantization:
            return self.f(x), DigitalCtx(v=x, m=None)
        sc = self._scales(train)
        xq, mx = _q(x, sc["x"], self.config.x_quant_bits, self.signed_in)
        v = xq / f32(sc["x"])
        y, my = _out(self.f(v), sc["y"], self.config.y_quant_bits, self.signed_out)
        self._record(train, {"x": x, "y": y})
        return y, DigitalCtx(v=v, m=mx & my)

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.v.shape)
        dx = g * self.df(ctx.v)
        return (dx if ctx.m is None else np.where(ctx.m, dx, f32(0))).astype(np.float32)


class ReLU(DigitalOp):
    """max(x, 0), the same in both modes (it maps codes to codes)."""

    def forward(self, x, *, train: bool = False, rng=None):
        x = self._input(x)
        return np.maximum(x, f32(0)), DigitalCtx(pos=x > 0)

    def backward(self, dy, ctx):
        return np.where(ctx.pos, check_grad(self, dy, ctx.pos.shape), f32(0)).astype(np.float32)


class Sigmoid(_Unary):
    """1/(1 + e^-x); quantized output unsigned, U(yb)."""
    signed_out = False

    def f(self, v):
        with np.errstate(over="ignore"):  # exp(-v) = inf for v << 0 gives the right limit 0
            return (f32(1) / (f32(1) + np.exp(-v))).astype(np.float32)

    def df(self, v):
        s = self.f(v)
        return s * (f32(1) - s)


class Tanh(_Unary):
    """tanh(x)."""

    def f(self, v):
        return np.tanh(v).astype(np.float32)

    def df(self, v):
        return f32(1) - np.tanh(v) ** 2


class GELU(_Unary):
    """x·Φ(x), the exact erf form."""

    def f(self, v):
        flat = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        return K.gelu(flat, np.empty_like(flat), n=flat.size).reshape(np.shape(v))

    def df(self, v):
        flat = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        return K.gelu_grad(flat, np.empty_like(flat), n=flat.size).reshape(np.shape(v))


class PReLU(DigitalOp):
    """x if x > 0 else a·x, a = params["weight"] (num_parameters,) per channel (axis 1) or shared.

    Quantized: Wq = R(clip(a·sw, Y(8))), y = clip(R(prelu(Xq/sx, Wq/sw)·sy), Y(yb))/sy; the gradient is 1
    where Xq > 0, else Wq/sw (torch's convention at 0).
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, config: Optional[LayerConfig] = None):
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters < 1:
            raise ValueError(f"PReLU: num_parameters={num_parameters!r}; expected a positive integer")
        super().__init__(config)
        self._add_param("weight", np.full(int(num_parameters), init, np.float32))

    def _param_names(self):
        return ("weight",)

    def _slope_shape(self, x):
        n = self.params["weight"].size
        if n == 1:
            return (1,) * max(x.ndim, 1)
        if x.ndim < 2 or x.shape[1] != n:
            raise ValueError(f"PReLU: x has shape {x.shape}; expected {n} channels on axis 1 (num_parameters={n})")
        return (1, n) + (1,) * (x.ndim - 2)

    def forward(self, x, *, train: bool = False, rng=None):
        x = self._input(x)
        shape = self._slope_shape(x)
        w = self.params["weight"]
        if not self.config.use_quantization:
            a = w.reshape(shape)
            return np.where(x > 0, x, a * x).astype(np.float32), DigitalCtx(v=x, a=a, m=None, mw=None)
        sc = self._scales(train)
        xq, mx = _q(x, sc["x"], self.config.x_quant_bits, True)
        wq, mw = _q(w, sc["weight"], 8, True)
        v, a = xq / f32(sc["x"]), (wq / f32(sc["weight"])).reshape(shape)
        y, my = _out(np.where(v > 0, v, a * v), sc["y"], self.config.y_quant_bits, True)
        self._record(train, {"x": x, "weight": w, "y": y})
        return y, DigitalCtx(v=v, a=a, m=mx & my, mw=mw)

    def backward(self, dy, ctx):
        v, a = ctx.v, ctx.a
        g = check_grad(self, dy, v.shape)
        if ctx.m is not None:
            g = np.where(ctx.m, g, f32(0))
        neg = v <= 0
        gw = np.where(neg, g * v, f32(0))
        axes = tuple(i for i in range(v.ndim) if not (a.size > 1 and i == 1))
        gw = gw.sum(axis=axes, dtype=np.float32).reshape(-1)
        if ctx.mw is not None:
            gw = np.where(ctx.mw, gw, f32(0))
        self.grads["weight"] += gw
        return np.where(neg, g * a, g).astype(np.float32)


class Sqrt(DigitalOp):
    """√x. Quantized: Xq = R(clip(x·sx, U(xb))), y = clip(R(⌊√(Xq·2^8)⌋·sy/(16·√sx)), U(yb))/sy (integer square
    root); the gradient is 1/(2√x) at the raw input, 0 where x <= 0."""
    signed_in = False
    signed_out = False

    def forward(self, x, *, train: bool = False, rng=None):
        x = self._input(x)
        if not self.config.use_quantization:
            y = np.sqrt(x).astype(np.float32)
            return y, DigitalCtx(x=x, m=None)
        sc = self._scales(train)
        xq, mx = _q(x, sc["x"], self.config.x_quant_bits, False)
        n = xq.astype(np.int64) << 8
        r = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
        r -= (r * r > n)  # exact integer square root (float64 sqrt is off by at most one here)
        r += ((r + 1) * (r + 1) <= n)
        v = (r.astype(np.float32) * f32(sc["y"])) / (f32(16) * np.sqrt(f32(sc["x"])))
        y, my = _out_codes(v, sc["y"], self.config.y_quant_bits, False)
        self._record(train, {"x": x, "y": y})
        return y, DigitalCtx(x=x, m=mx & my)

    def backward(self, dy, ctx):
        x = ctx.x
        g = check_grad(self, dy, x.shape)
        pos = x > 0
        dx = np.where(pos, g / (f32(2) * np.sqrt(np.where(pos, x, f32(1)))), f32(0))
        if ctx.m is not None:
            dx = np.where(ctx.m, dx, f32(0))
        return dx.astype(np.float32)


class Mean(DigitalOp):
    """Mean over `dim` (int, tuple or None: all). Quantized: y = clip(R(ΣXq/n), Y(yb))/sx (keeps the input scale)."""
    has_y = False

    def __init__(self, dim=None, keepdim: bool = False, config: Optional[LayerConfig] = None):
        super().__init__(config)
        if dim is not None and not isinstance(dim, (int, np.integer, tuple, list)):
            raise TypeError(f"Mean: dim={dim!r}; expected None, an int or a tuple of ints")
        self.dim = tuple(dim) if isinstance(dim, (tuple, list)) else dim
        self.keepdim = bool(keepdim)

    def _axes(self, x):
        dims = range(x.ndim) if self.dim is None else (self.dim if isinstance(self.dim, tuple) else (self.dim,))
        axes = []
        for d in dims:
            if not -x.ndim <= int(d) < x.ndim or isinstance(d, bool):
                raise ValueError(f"Mean: dim={self.dim!r} is not a dimension of x with shape {x.shape}; expected "
                                 f"dims in [{-x.ndim}, {x.ndim - 1}]")
            axes.append(int(d) % x.ndim)
        if len(set(axes)) != len(axes):
            raise ValueError(f"Mean: dim={self.dim!r} repeats a dimension")
        return tuple(axes)

    def forward(self, x, *, train: bool = False, rng=None):
        x = self._input(x)
        axes = self._axes(x)
        n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        ctx = DigitalCtx(shape=x.shape, axes=axes, n=n)
        if not self.config.use_quantization:
            return x.mean(axis=axes, keepdims=self.keepdim, dtype=np.float32), ctx
        sc = self._scales(train)
        xq, mx = _q(x, sc["x"], self.config.x_quant_bits, True)
        s = xq.sum(axis=axes, keepdims=True, dtype=np.float32) / f32(n)
        y, my = _out_codes(s, sc["x"], self.config.y_quant_bits, True)  # keeps the input scale
        self._record(train, {"x": x})
        ctx.m = mx & my
        return (y if self.keepdim else y.reshape([d for i, d in enumerate(x.shape) if i not in axes])), ctx

    def backward(self, dy, ctx):
        shape, axes = ctx.shape, ctx.axes
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        out_shape = kept if self.keepdim else tuple(d for i, d in enumerate(shape) if i not in axes)
        g = np.broadcast_to(check_grad(self, dy, out_shape).reshape(kept) / f32(ctx.n), shape)
        return (np.where(ctx.m, g, f32(0)) if ctx.m is not None else g).astype(np.float32)


class _Binary(DigitalOp):
    """Two-input op: forward((x1, x2)) -> y; backward returns (dx1, dx2)."""
    inputs = ("x1", "x2")

    def _pair(self, xs):
        if not isinstance(xs, (tuple, list)) or len(xs) != 2:
            raise TypeError(f"{type(self).__name__}: expected a pair (x1, x2), got {type(xs).__name__}")
        x1, x2 = self._input(xs[0], "x1"), self._input(xs[1], "x2")
        if x1.shape != x2.shape:
            raise ValueError(f"{type(self).__name__}: x1 has shape {x1.shape} and x2 {x2.shape}; expected equal "
                             f"shapes")
        return x1, x2


class Add(_Binary):
    """x1 + x2. Quantized: s = min(sl, sr), q_i = R(clip(x_i·s, Y(xb))), y = clip(R((q1+q2)·sy/s), Y(yb))/sy."""

    def forward(self, xs, *, train: bool = False, rng=None):
        x1, x2 = self._pair(xs)
        if not self.config.use_quantization:
            return x1 + x2, DigitalCtx(shape=x1.shape)
        sc = self._scales(train)
        s = min(sc["x1"], sc["x2"])
        xb, yb = self.config.x_quant_bits, self.config.y_quant_bits
        (q1, m1), (q2, m2) = _q(x1, s, xb, True), _q(x2, s, xb, True)
        y, my = _out_codes(((q1 + q2) * f32(sc["y"])) / f32(s), sc["y"], yb, True)
        self._record(train, {"x1": x1, "x2": x2, "y": y})
        return y, DigitalCtx(shape=x1.shape, m=(m1 & my, m2 & my))

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.shape)
        if ctx.m is None:
            return g, g.copy()
        return np.where(ctx.m[0], g, f32(0)), np.where(ctx.m[1], g, f32(0))


class Mul(_Binary):
    """x1·x2. Quantized: y = clip(R((q1/sl)·(q2/sr)·sy), Y(yb))/sy."""

    def forward(self, xs, *, train: bool = False, rng=None):
        x1, x2 = self._pair(xs)
        if not self.config.use_quantization:
            return x1 * x2, DigitalCtx(a=x1, b=x2, m=None)
        sc = self._scales(train)
        xb = self.config.x_quant_bits
        q1, m1 = _q(x1, sc["x1"], xb, True)
        q2, m2 = _q(x2, sc["x2"], xb, True)
        a, b = q1 / f32(sc["x1"]), q2 / f32(sc["x2"])
        y, my = _out(a * b, sc["y"], self.config.y_quant_bits, True)
        self._record(train, {"x1": x1, "x2": x2, "y": y})
        return y, DigitalCtx(a=a, b=b, m=(m1 & my, m2 & my))

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.a.shape)
        d1, d2 = g * ctx.b, g * ctx.a
        if ctx.m is not None:
            d1, d2 = np.where(ctx.m[0], d1, f32(0)), np.where(ctx.m[1], d2, f32(0))
        return d1.astype(np.float32), d2.astype(np.float32)


class Divide(_Binary):
    """clip(x1/x2, -8, 8) (the vendor's ElementDivide). Quantized: witnp's own rule (module docstring)."""

    def forward(self, xs, *, train: bool = False, rng=None):
        x1, x2 = self._pair(xs)
        if self.config.use_quantization:
            sc = self._scales(train)
            xb = self.config.x_quant_bits
            q1, m1 = _q(x1, sc["x1"], xb, True)
            q2, m2 = _q(x2, sc["x2"], xb, True)
            a, b = q1 / f32(sc["x1"]), q2 / f32(sc["x2"])
        else:
            a, b, m1, m2 = x1, x2, True, True
        nz = b != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(nz, a / np.where(nz, b, f32(1)), f32(8) * np.sign(a)).astype(np.float32)
        inside = nz & (r >= -8) & (r <= 8)
        v = np.clip(r, f32(-8), f32(8))
        if not self.config.use_quantization:
            return v, DigitalCtx(a=a, b=b, m=(inside, inside))
        y, my = _out(v, sc["y"], self.config.y_quant_bits, True)
        self._record(train, {"x1": x1, "x2": x2, "y": y})
        return y, DigitalCtx(a=a, b=b, m=(inside & my & m1, inside & my & m2))

    def backward(self, dy, ctx):
        a, b = ctx.a, ctx.b
        g = check_grad(self, dy, a.shape)
        safe = np.where(b != 0, b, f32(1))
        d1 = np.where(ctx.m[0], g / safe, f32(0))
        d2 = np.where(ctx.m[1], -g * a / (safe * safe), f32(0))
        return d1.astype(np.float32), d2.astype(np.float32)


class Cat(DigitalOp):
    """Concatenate along `dim`. Quantized (two inputs): each input quantized with its own scale (left, right)
    and dequantized, then y = clip(R(v·sy), Y(yb))/sy; the gradient passes through."""
    inputs = ("x1", "x2")

    def __init__(self, dim: int = 0, config: Optional[LayerConfig] = None):
        super().__init__(config)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Cat: dim={dim!r}; expected an int")
        self.dim = int(dim)

    def forward(self, xs, *, train: bool = False, rng=None):
        if not isinstance(xs, (tuple, list)) or len(xs) < 1:
            raise TypeError(f"Cat: expected a tuple of arrays, got {type(xs).__name__}")
        xs = [self._input(x, f"x{i + 1}") for i, x in enumerate(xs)]
        nd = xs[0].ndim
        if not -nd <= self.dim < nd:
            raise ValueError(f"Cat: dim={self.dim} is not a dimension of x1 with shape {xs[0].shape}")
        d = self.dim % nd
        for i, x in enumerate(xs[1:], 2):
            if x.ndim != nd or x.shape[:d] + x.shape[d + 1:] != xs[0].shape[:d] + xs[0].shape[d + 1:]:
                raise ValueError(f"Cat: x{i} has shape {x.shape}, x1 {xs[0].shape}; expected equal shapes except "
                                 f"on dim {self.dim}")
        ctx = DigitalCtx(sizes=[x.shape[d] for x in xs], d=d)
        if not self.config.use_quantization:
            return np.concatenate(xs, axis=d), ctx
        if len(xs) != 2:
            raise ValueError(f"Cat: quantized Cat takes two inputs (scales left and right), got {len(xs)}")
        sc = self._scales(train)
        xb = self.config.x_quant_bits
        qs = [_q(x, sc[k], xb, True) for x, k in zip(xs, ("x1", "x2"))]
        v = np.concatenate([q / f32(sc[k]) for (q, _), k in zip(qs, ("x1", "x2"))], axis=d)
        y, my = _out(v, sc["y"], self.config.y_quant_bits, True)
        self._record(train, {"x1": xs[0], "x2": xs[1], "y": y})
        ctx.m = np.concatenate([m for _, m in qs], axis=d) & my
        return y, ctx

    def backward(self, dy, ctx):
        g = check_array(self, "dy", dy, min_ndim=1)
        if ctx.m is not None:
            g = np.where(ctx.m, g, f32(0))
        return tuple(np.split(g, np.cumsum(ctx.sizes)[:-1], axis=ctx.d))
