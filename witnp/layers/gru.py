"""GRU and GRUCell: torch's formulas and parameter layout in float mode (gru.md requirement 1).

Parameters: weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,), gate order r, z, n;
h' = (1 - z)·n + z·h. `GRU` runs a whole (N, T, I) batch-first sequence in one compiled recurrence (the
input projection of every step is one matrix product; weight gradients are matrix products over all steps).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import kernels as K
from ..config import LayerConfig
from ..rng import init_rng
from .base import Layer, check_array, check_finite, check_grad

__all__ = ["GRU", "GRUCell"]

f32 = np.float32


class _GRUBase(Layer):
    def __init__(self, input_size, hidden_size, bias, config, rng):
        super().__init__(config)
        name = type(self).__name__
        for arg, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}: {arg}={v!r}; expected a positive integer")
        if self.config.use_quantization:
            raise ValueError(f"{name}: the quantized GRU (gru.md's three-array form) is not available yet; use "
                             f"use_quantization=False for this layer")
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

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.has_bias}"

    def _biases(self):
        z = np.zeros(3 * self.hidden_size, np.float32)
        return (self.params["bias_ih"], self.params["bias_hh"]) if self.has_bias else (z, z)

    def _run(self, x, h0):
        """x (N, T, I), h0 (N, H) float32 -> hs (N, T, H) and the ctx of the recurrence."""
        N, T, _ = x.shape
        H = self.hidden_size
        b_ih, b_hh = self._biases()
        gi = (x.reshape(N * T, -1) @ self.params["weight_ih"].T + b_ih).reshape(N, T, 3 * H).astype(np.float32)
        hs, r, z, n, ghn = (np.empty((N, T, H), np.float32) for _ in range(5))
        K.gru_forward(gi, np.ascontiguousarray(self.params["weight_hh"].T), b_hh, h0, hs, r, z, n, ghn,
                      n=N * T * H)
        return hs, {"x": x, "h0": h0, "hs": hs, "r": r, "z": z, "n": n, "ghn": ghn}

    def _back(self, dhs, dhT, c):
        """Gradients: adds into grads; returns dx (N, T, I), dh0 (N, H)."""
        x, h0, hs = c["x"], c["h0"], c["hs"]
        N, T, H = hs.shape
        dgi, dgh = np.empty((N, T, 3 * H), np.float32), np.empty((N, T, 3 * H), np.float32)
        dh0 = np.empty((N, H), np.float32)
        K.gru_backward(dhs, dhT, self.params["weight_hh"], h0, hs, c["r"], c["z"], c["n"], c["ghn"], dgi, dgh, dh0,
                       n=N * T * H)
        dgi2, dgh2 = dgi.reshape(N * T, 3 * H), dgh.reshape(N * T, 3 * H)
        hprev = np.concatenate([h0[:, None], hs[:, :-1]], axis=1).reshape(N * T, H)
        self.grads["weight_ih"] += dgi2.T @ x.reshape(N * T, -1)
        self.grads["weight_hh"] += dgh2.T @ hprev
        if self.has_bias:
            self.grads["bias_ih"] += dgi2.sum(axis=0)
            self.grads["bias_hh"] += dgh2.sum(axis=0)
        dx = (dgi2 @ self.params["weight_ih"]).reshape(x.shape)
        return dx.astype(np.float32), dh0

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
    y (N, T, hidden_size) float32, the hidden state of every step (the last state is y[:, -1]).
    backward(dy) returns dx, or (dx, dh0) when the forward was given h0.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, config: Optional[LayerConfig] = None,
                 *, rng=None):
        super().__init__(input_size, hidden_size, bias, config, rng)

    def forward(self, x, *, train: bool = False, rng=None):
        with_h = isinstance(x, (tuple, list))
        x, h = (x[0], x[1]) if with_h else (x, None)
        x = check_array(self, "x", x, ndim=3, what=f"(N, T, {self.input_size}) (batch first)")
        if x.shape[2] != self.input_size:
            raise ValueError(f"GRU: x has shape {x.shape}; expected (N, T, {self.input_size}) (input_size="
                             f"{self.input_size})")
        check_finite(self, "x", x)
        hs, c = self._run(x, self._h0(h, x.shape[0]))
        c["with_h"] = with_h
        return hs, c

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx["hs"].shape)
        dx, dh0 = self._back(g, np.zeros_like(ctx["h0"]), ctx)
        return (dx, dh0) if ctx["with_h"] else dx


class GRUCell(_GRUBase):
    """One GRU step: forward((x, h)) with x (N, input_size), h (N, hidden_size) -> h' (N, hidden_size);
    backward(dh') returns (dx, dh)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, config: Optional[LayerConfig] = None,
                 *, rng=None):
        super().__init__(input_size, hidden_size, bias, config, rng)

    def forward(self, xh, *, train: bool = False, rng=None):
        if not isinstance(xh, (tuple, list)) or len(xh) != 2:
            raise TypeError(f"GRUCell: expected (x, h), got {type(xh).__name__}")
        x = check_array(self, "x", xh[0], ndim=2, what=f"(N, {self.input_size})")
        if x.shape[1] != self.input_size:
            raise ValueError(f"GRUCell: x has shape {x.shape}; expected (N, {self.input_size})")
        check_finite(self, "x", x)
        hs, c = self._run(x[:, None, :], self._h0(xh[1], x.shape[0]))
        return hs[:, 0], c

    def backward(self, dy, ctx):
        g = check_grad(self, dy, ctx["h0"].shape)
        dx, dh = self._back(np.zeros_like(ctx["hs"]), g, ctx)
        return dx[:, 0], dh
