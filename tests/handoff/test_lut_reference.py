"""The digital ops' tables of the firmware export against chip.md §8's formulas, code by code.

The export builds each table by running the layer's own forward on every input code, so "engine equals
model" holds by construction; here each table is recomputed from the formula alone (plain NumPy, float32
evaluation as chip.md says, nothing from witnp's digital ops), so a wrong constant in the layer fails.
"""
import math

import numpy as np
import pytest

import witnp as wn
from witnp.handoff.engine import IntegerEngine
from witnp.handoff.export import export_model

f32 = np.float32


def Y(bits):
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def U(bits):
    return 0, 2 ** bits - 1


def _sigmoid(v):
    return f32(1) / (f32(1) + np.exp(-v))


def _gelu(v):  # the exact erf form, correctly rounded to float32
    return np.array([0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))) for t in v.astype(np.float64)], f32)


def reference_table(op, xb, yb, sx, sy, slope=None, sw=None):
    """The output code of every input code (chip.md §8)."""
    if op == "Sqrt":
        lo, hi = U(xb)
        c = np.arange(lo, hi + 1)
        r = np.array([math.isqrt(int(q) << 8) for q in c], np.int64)   # ⌊√(Xq·2^8)⌋
        v = (r.astype(f32) * f32(sy)) / (f32(16) * np.sqrt(f32(sx)))
        return np.clip(np.rint(v), *U(yb)).astype(np.int64)
    lo, hi = Y(xb)
    v = (np.arange(lo, hi + 1).astype(f32) / f32(sx)).astype(f32)          # Xq / sx
    if op == "Sigmoid":
        return np.clip(np.rint(_sigmoid(v) * f32(sy)), *U(yb)).astype(np.int64)
    if op == "Tanh":
        f = np.tanh(v)
    elif op == "GELU":
        f = _gelu(v)
    elif op == "PReLU":
        wq = np.rint(np.clip(f32(slope) * f32(sw), *Y(8)))                 # Wq = R(clip(w·sw, Y(8)))
        f = np.where(v > 0, v, (f32(wq) / f32(sw)) * v)
    return np.clip(np.rint(f.astype(f32) * f32(sy)), *Y(yb)).astype(np.int64)


OPS = [("Sigmoid", {}), ("Tanh", {}), ("GELU", {}), ("PReLU", {"slope": 0.3}), ("PReLU", {"slope": -1.7}),
       ("Sqrt", {})]


@pytest.mark.parametrize("op, extra", OPS)
@pytest.mark.parametrize("xb, yb, sx, sy", [(8, 8, 16, 32), (8, 10, 64, 128), (10, 8, 32, 16), (8, 8, 8, 64)])
def test_export_table_equals_the_formula(op, extra, xb, yb, sx, sy):
    cfg = wn.LayerConfig(use_quantization=True, use_auto_scale=False, x_quant_bits=xb, y_quant_bits=yb,
                         scale_x=sx, scale_y=sy, scale_weight=64)
    layer = wn.PReLU(1, init=extra["slope"], config=cfg) if op == "PReLU" else getattr(wn, op)(config=cfg)
    rec = export_model(wn.Sequential(layer))[0][1]
    want = reference_table(op, xb, yb, sx, sy, extra.get("slope"), 64)
    np.testing.assert_array_equal(rec["lut"].astype(np.int64), want)
    # and the integer engine's output on every code is that table over sy
    lo, hi = U(xb) if op == "Sqrt" else Y(xb)
    x = (np.arange(lo, hi + 1).astype(f32) / f32(sx)).reshape(-1, 1)
    y = IntegerEngine(export_model(wn.Sequential(layer))).run(x)[0]
    np.testing.assert_array_equal(y.ravel(), (want / f32(sy)).astype(f32))
