"""GRU and GRUCell: torch's formulas and parameter layout in float mode (gru.md requirement 1); the chip's
three-array form when quantized (docs/gru.md, `witnp.array.gru`).

Parameters: weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,), gate order r, z, n;
h' = (1 - z)·n + z·h. `GRU` runs a whole (N, T, I) batch-first sequence in one compiled recurrence (the
input projection of every step is one matrix product; weight gradients are matrix products over all steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..array import gru as cim_gru
from .. import kernels as K
from ..config import LayerConfig
from ..array.conv.ops import column_sums
from ..memory import empty
from ..noise import noise_model
from ..quant import ScaleObserver
from ..rng import init_rng, noise_rng
from .base import Layer, check_array, check_finite, check_grad, check_flag

__all__ = ["GRU", "GRUCell"]

f32 = np.float32


@dataclass(slots=True)
class GRULayerCtx:
    """GRU / GRUCell forward -> backward: the quantized recurrence's record (`witnp.array.ctx.GRUCtx`) or the
    float recurrence's saved arrays (run), the initial state h0 (N, H) and the output's shape."""
    quant: bool
    run: Any
    h0: np.ndarray
    y_shape: tuple
    with_h: bool


ARRAY_SCALES = ("x_zr", "weight_zr", "y_zr", "x_in", "weight_in", "x_hn", "weight_hn", "y_n")


class _GRUBase(Layer):
    def __init__(self, input_size, hidden_size, bias, config, rng, scale_ones=128):
        super().__init__(config)
        name = type(self).__name__
        for arg, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: {arg}={v!r}; expected a positive integer")
        check_flag(name, "bias", bias)
        if scale_ones not in (127, 128):
            raise ValueError(f"{name}: scale_ones={scale_ones!r}; expected 127 or 128")
        cfg = self.config
        if cfg.use_quantization:
            if cfg.handle_neg_in not in ("FALSE", "PN"):
                raise ValueError(f"{name}: handle_neg_in={cfg.handle_neg_in!r} is not supported by the quantized GRU; "
                                 f"expected 'PN' (the hidden state is signed) or 'FALSE'")
            if cfg.x_quant_bits != 8 or not 8 <= cfg.y_quant_bits <= 10:
                raise ValueError(f"{name}: the quantized GRU needs x_quant_bits=8 and y_quant_bits in 8..10 (LUTs of "
                                 f"256 to 1024 entries); got {cfg.x_quant_bits} and {cfg.y_quant_bits}")
        self.scale_ones = int(scale_ones)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        H, I = self.hidden_size, self.input_size
        gen = rng if rng is not None else init_rng()
        k = 1.0 / math.sqrt(H)  # torch's init: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
        self._add_param("weight_ih", gen.uniform(-k, k, (3 * H, I)))
        self._add_param("weight_hh", gen.uniform(-k, k, (3 * H, H)))
        self.has_bias = bool(bias)
        if bias:
            self._add_param("bias_ih", gen.uniform(-k, k, 3 * H))
            self._add_param("bias_hh", gen.uniform(-k, k, 3 * H))
        init = {n: (cfg.scale_x if n[0] == "x" else cfg.scale_weight if n[0] == "w" else cfg.scale_y)
                for n in ARRAY_SCALES}
        io0 = {n: (cfg.x_quant_bits if n[0] == "x" else 8 if n[0] == "w" else cfg.y_quant_bits) for n in ARRAY_SCALES}
        self.observer = ScaleObserver(name, self.stats, ARRAY_SCALES, init, io0, cfg.auto_scale_update_step,
                                      cfg.use_quantization and cfg.use_auto_scale)
        self.noise = noise_model(cfg.noise_model, cfg.noise_level)

    def _qs(self):
        xb, yb = self.config.x_quant_bits, self.config.y_quant_bits
        return {n: (xb + 1 if n[0] == "x" else 8 if n[0] == "w" else yb) for n in ARRAY_SCALES}

    def begin_epoch(self) -> None:
        self.observer.begin_epoch()

    @property
    def scales(self) -> dict:
        return dict(self.observer.scales)

    def export_arrays(self) -> dict:
        """What the firmware needs for this GRU (gru.md requirement 6), at the deployment scales:
        {"zr" | "in" | "hn": {"weight": int8 (O, K), "bias_npu": int32 (O,) (multiples of 128), "scale_x",
        "scale_weight", "scale_y", "G", "shift_x", "shift_weight", "shift_y", "shift_G"}, "lut_sigmoid",
        "lut_tanh" (int, indexed by code + 2^(yb-1)), "scale_ones", "shift_bits": [-7, -7]}."""
        if not self.config.use_quantization:
            raise ValueError(f"{type(self).__name__}: export needs a quantized GRU (use_quantization=True)")
        sc = self.observer.scales_for_forward(False, self._qs())
        out = {}
        for name, (W, b) in cim_gru.array_params(self.params, self.hidden_size, self.has_bias).items():
            ys = sc["y_zr"] if name == "zr" else sc["y_n"]
            a = cim_gru._array(type(self).__name__, name, W, b, self.config, sc["x_" + name], sc["weight_" + name],
                               None, None, ys)
            G = int(np.rint(sc["x_" + name] * sc["weight_" + name] / ys))
            out[name] = {"weight": a["wq"].astype(np.int8), "bias_npu": (128 * a["ba"].astype(np.int64)).astype(
                np.int32), "scale_x": sc["x_" + name], "scale_weight": sc["weight_" + name], "scale_y": ys, "G": G,
                "shift_x": int(math.log2(sc["x_" + name])), "shift_weight": int(math.log2(sc["weight_" + name])),
                "shift_y": int(math.log2(ys)), "shift_G": int(math.log2(G)) if G > 0 else None}
        ls, lt, _, _ = cim_gru.luts(self.config.y_quant_bits, self.scale_ones, sc["y_zr"], sc["y_n"])
        out.update(lut_sigmoid=ls.astype(np.int32), lut_tanh=lt.astype(np.int32), scale_ones=self.scale_ones,
                   shift_bits=[-7, -7])
        return out

    def _qrun(self, x, h0, train, rng):
        qs = self._qs()
        sc = self.observer.scales_for_forward(train, qs)
        y, c, st = cim_gru.qgru_forward(self, x, h0, sc, self.noise if self.noise.active else None,
                                        rng if rng is not None else noise_rng(), self.observer.wants_record(train))
        if train:
            self.observer.after_train_forward(st or {}, qs)
        return y, c

    def extra_repr(self):
        extra = "" if getattr(self, "return_sequences", True) else ", return_sequences=False"
        return f"{self.input_size}, {self.hidden_size}, bias={self.has_bias}{extra}"

    def _biases(self):
        z = np.zeros(3 * self.hidden_size, np.float32)
        return (self.params["bias_ih"], self.params["bias_hh"]) if self.has_bias else (z, z)

    def _run(self, x, h0):
        """x (N, T, I), h0 (N, H) float32 -> hs (N, T, H) and the ctx of the recurrence (time-major inside)."""
        N, T, _ = x.shape
        H = self.hidden_size
        b_ih, b_hh = self._biases()
        xt = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=np.float32).reshape(T * N, -1)
        gi = (xt @ self.params["weight_ih"].T + b_ih).reshape(T, N, 3 * H).astype(np.float32, copy=False)
        hs, r, z, n, ghn = (empty((T, N, H)) for _ in range(5))
        K.gru_forward(gi, K.pad_cols(self.params["weight_hh"].T), b_hh, h0, hs, r, z, n, ghn, n=N * T * H)
        return np.ascontiguousarray(hs.transpose(1, 0, 2)), {"xt": xt, "h0": h0, "hs": hs, "r": r, "z": z, "n": n,
                                                            "ghn": ghn}

    def _back(self, dhs, dhT, c):
        """Gradients: adds into grads; dhs (N, T, H), dhT (N, H); returns dx (N, T, I), dh0 (N, H)."""
        xt, h0, hs = c["xt"], c["h0"], c["hs"]
        T, N, H = hs.shape
        dgi, dgh = empty((T, N, 3 * H)), empty((T, N, 3 * H))
        dh0 = np.empty((N, H), np.float32)
        K.gru_backward(np.ascontiguousarray(dhs.transpose(1, 0, 2), dtype=np.float32), dhT,
                       K.pad_cols(self.params["weight_hh"]), h0, hs, c["r"], c["z"], c["n"], c["ghn"], dgi, dgh, dh0,
                       n=N * T * H)
        dgi2, dgh2 = dgi.reshape(T * N, 3 * H), dgh.reshape(T * N, 3 * H)
        hprev = np.concatenate([h0[None], hs[:-1]]).reshape(T * N, H)
        self.grads["weight_ih"] += dgi2.T @ xt
        self.grads["weight_hh"] += dgh2.T @ hprev
        if self.has_bias:
            self.grads["bias_ih"] += column_sums(dgi2)
            self.grads["bias_hh"] += column_sums(dgh2)
        dx = (dgi2 @ self.params["weight_ih"]).reshape(T, N, -1)
        return np.ascontiguousarray(dx.transpose(1, 0, 2), dtype=np.float32), dh0

    def _h0(self, h, N):
        H = self.hidden_size
        if h is None:
            return np.zeros((N, H), np.float32)
        h = check_array(self, "h", h, ndim=2, what=f"({N}, {H})")
        if h.shape != (N, H):
            raise ValueError(f"{type(self).__name__}: h has shape {h.shape}; expected ({N}, {H}) (batch, hidden_size)")
        check_finite(self, "h", h)
        return h


class GRU(_GRUBase):
    """A GRU layer over batch-first sequences.

    forward(x) or forward((x, h0)): x (N, T, input_size) float, h0 (N, hidden_size) (zeros when absent) ->
    y (N, T, hidden_size) float32, the hidden state of every step; with return_sequences=False (Keras's name)
    y (N, hidden_size), the last state, as a keyword spotter's classifier head takes it.
    backward(dy) returns dx, or (dx, dh0) when the forward was given h0.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, config: Optional[LayerConfig] = None,
                 *, rng=None, scale_ones: int = 128, return_sequences: bool = True):
        super().__init__(input_size, hidden_size, bias, config, rng, scale_ones)
        self.return_sequences = check_flag(self, "return_sequences", return_sequences)

    def forward(self, x, *, train: bool = False, rng=None):
        with_h = isinstance(x, (tuple, list))
        x, h = (x[0], x[1]) if with_h else (x, None)
        x = check_array(self, "x", x, ndim=3, what=f"(N, T, {self.input_size}) (batch first)")
        if x.shape[2] != self.input_size:
            raise ValueError(f"GRU: x has shape {x.shape}; expected (N, T, {self.input_size}) (input_size="
                             f"{self.input_size})")
        check_finite(self, "x", x)
        h0 = self._h0(h, x.shape[0])
        quant = self.config.use_quantization
        hs, run = self._qrun(x, h0, train, rng) if quant else self._run(x, h0)
        if not self.return_sequences:
            return hs[:, -1].copy(), GRULayerCtx(quant, run, h0, hs.shape, with_h)
        return hs, GRULayerCtx(quant, run, h0, hs.shape, with_h)

    def backward(self, dy, ctx):
        if self.return_sequences:
            g = check_grad(self, dy, ctx.y_shape)
        else:  # the last state's gradient: every earlier step's output gets none
            N, T, H = ctx.y_shape
            g = np.zeros(ctx.y_shape, np.float32)
            g[:, -1] = check_grad(self, dy, (N, H))
        if ctx.quant:
            dx, dh0 = cim_gru.qgru_backward(self, g, ctx.run)
        else:
            dx, dh0 = self._back(g, np.zeros_like(ctx.h0), ctx.run)
        return (dx, dh0) if ctx.with_h else dx


class GRUCell(_GRUBase):
    """One GRU step: forward((x, h)) with x (N, input_size), h (N, hidden_size) -> h' (N, hidden_size);
    backward(dh') returns (dx, dh)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, config: Optional[LayerConfig] = None,
                 *, rng=None, scale_ones: int = 128):
        super().__init__(input_size, hidden_size, bias, config, rng, scale_ones)

    def forward(self, xh, *, train: bool = False, rng=None):
        if not isinstance(xh, (tuple, list)) or len(xh) != 2:
            raise TypeError(f"GRUCell: expected (x, h), got {type(xh).__name__}")
        x = check_array(self, "x", xh[0], ndim=2, what=f"(N, {self.input_size})")
        if x.shape[1] != self.input_size:
            raise ValueError(f"GRUCell: x has shape {x.shape}; expected (N, {self.input_size})")
        check_finite(self, "x", x)
        h0 = self._h0(xh[1], x.shape[0])
        quant = self.config.use_quantization
        hs, run = self._qrun(x[:, None, :], h0, train, rng) if quant else self._run(x[:, None, :], h0)
        return hs[:, 0], GRULayerCtx(quant, run, h0, h0.shape, True)

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx.y_shape)
        if ctx.quant:
            dx, dh = cim_gru.qgru_backward(self, g[:, None, :], ctx.run)
        else:
            dx, dh = self._back(np.zeros_like(ctx.h0)[:, None], g, ctx.run)
        return dx[:, 0], dh
