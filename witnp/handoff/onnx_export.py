"""`witnp export MODEL --onnx model.onnx`: the integer model as a graph of standard ONNX operators
(docs/firmware-export.md). Needs the optional extra: ``pip install "witnp[onnx]"`` (onnx; onnxruntime to run it).

The graph mirrors the integer engine (`engine.py`) op for op. Codes are carried as float64 tensors holding
integers (every product and sum stays far below 2^53, so float64 is exact); the network input is quantized as
the model does (x·sx in float32, then Round, ONNX's round half to even); a rounding shift is Mul by 2^k and
Round; clips are Min/Max; array products are MatMul with the integer weight codes; convolutions gather their
patches with constant index tables (Gather) and multiply; tables (LUTs) are Gather; the GRU is unrolled over
the input's time steps. The output `y` is float32 codes / scale: the QAT model's inference output, bit for
bit in onnxruntime. Models with a GRU also get `<name>.step.onnx`: one frame `x` (N, I) and each GRU's state
`h_<layer>` (N, H) (Q7 codes, float64) in; `y` and `h_<layer>_out` out, equal to `IntegerEngine.step`.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ..array.conv.ops import Geometry
from ..quant import code_range
from .engine import _log2 as _lg, _pad_code, _requant_exp, floors, mean_axes, merge_constants, reshaped
from .record_walk import RecordWalk

__all__ = ["onnx_model", "OPSET", "need_onnx"]

OPSET = 17


def need_onnx():
    """The onnx module, or a clear error naming the extra."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError('--onnx needs the onnx package, which is not installed: pip install "witnp[onnx]"') from None
    return onnx


class _G:
    """A growing graph: nodes, constant initializers, unique names."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base="t"):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, a, dtype=np.float64, base="c"):
        name = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(a, dtype), name))
        return name

    def op(self, op, *inputs, base=None, **attrs):
        out = self.name(base or op.lower())
        self.nodes.append(self.h.make_node(op, list(inputs), [out], **attrs))
        return out

    # integer arithmetic on float64 codes
    def scale(self, t, k):
        """R(t·2^k): exact for k >= 0; Round (half to even) after an exact Mul for k < 0."""
        if k == 0:
            return t
        m = self.op("Mul", t, self.const(2.0 ** k))
        return m if k > 0 else self.op("Round", m)

    def requant(self, t, k, fl):
        """An array's requantization t·2^k: R, or ⌊t·2^k⌋ with fl (LayerConfig.rounding "floor")."""
        return self.scale(t, k) if not fl or k >= 0 else self.floor_shr(t, -k)

    def clip(self, t, lo, hi):
        return self.op("Max", self.op("Min", t, self.const(float(hi))), self.const(float(lo)))

    def floor_shr(self, t, k):
        """⌊t·2^-k⌋: an arithmetic right shift by k."""
        return self.op("Floor", self.op("Mul", t, self.const(2.0 ** -k)))

    def relu(self, t):
        return self.op("Max", t, self.const(0.0))

    def neg(self, t):
        return self.op("Neg", t)


class _Builder(RecordWalk):
    def __init__(self, g: _G, x_name: str, stream: bool = False):
        self.g, self.x, self.stream = g, x_name, stream
        self.states: List[Tuple[str, int]] = []  # streaming: (GRU name, H)
        self.state_out: Dict[str, str] = {}

    def codes(self, c, s, sx):
        """R(v·sx) of the current tensor: the float32 input (s None) as the model quantizes it, or codes at s."""
        g = self.g
        if s is None:
            q = g.op("Round", g.op("Mul", c, g.const(np.float32(sx), np.float32)))
            return g.op("Cast", q, to=self.g.onnx.TensorProto.DOUBLE)
        return g.scale(c, _lg(sx, "scale") - _lg(s, "input scale"))

    def input_codes(self, c, s, rec, signed=False):
        """(pos, neg or None) as engine._input_codes."""
        g = self.g
        xb, mode = int(rec["x_quant_bits"]), rec["handle_neg_in"]
        u = self.codes(c, s, float(rec["scale_x"]))
        hi = code_range(xb, signed=False)[1]
        if mode == "PN":
            return g.clip(g.relu(u), 0, hi), g.clip(g.relu(g.neg(u)), 0, hi)
        if signed:
            return g.clip(u, *code_range(xb)), None
        shift = float(rec.get("shift", 0)) if mode == "Shift" else 0.0
        return g.clip(g.op("Add", u, g.const(shift)) if shift else u, 0, hi), None

    def array(self, rows_pos, rows_neg, wmat, rec, out_clip=None):
        """Linear rules on (..., K) rows against wmat (K, O) integer codes (engine._array)."""
        g = self.g
        xb, yb = int(rec["x_quant_bits"]), int(rec["y_quant_bits"])
        lo, hi = code_range(yb)
        lo2, hi2 = out_clip if out_clip is not None else (lo, hi)
        W = g.const(wmat)
        b = g.const(np.asarray(rec["bias_npu"], np.float64))
        e = _requant_exp(rec)
        fl = floors(rec)
        if xb > 8:
            def parts(p):
                d = g.floor_shr(p, 8)
                return d, g.op("Sub", p, g.op("Mul", d, g.const(256.0)))
            pd, pl = parts(rows_pos)
            if rows_neg is not None:
                nd, nl = parts(rows_neg)
                pd, pl = g.op("Sub", pd, nd), g.op("Sub", pl, nl)
            yl = g.clip(g.requant(g.op("Add", g.op("MatMul", pl, W), b), e, fl), lo, hi)
            acc_d = g.op("Add", g.op("Mul", g.op("MatMul", pd, W), g.const(256.0)),
                         g.const(np.asarray(rec["bias_d"], np.float64)))
            yd = g.requant(acc_d, -_lg(rec["G"], "G"), fl)
            return g.clip(g.op("Add", yl, yd), lo2, hi2)
        xs = rows_pos if rows_neg is None else g.op("Sub", rows_pos, rows_neg)
        y = g.clip(g.requant(g.op("Add", g.op("MatMul", xs, W), b), e, fl), lo, hi)
        return g.clip(y, lo2, hi2) if out_clip is not None else y

    # ------------------------------------------------------------------ shapes and patches
    @staticmethod
    def _patch_index(C, H, W, geo, jfirst, transposed=False, Ho=None, Wo=None):
        """Gather indices (Ho·Wo, K) into the padded flat input (Conv2d) or the flat input plus one zero slot at
        C·H·W (ConvTranspose2d), features in (c, i, j) or, jfirst, (j, i, c) order; and (Ho, Wo)."""
        kh, kw, sh, sw, ph, pw, dh, dw, oph, opw, G = (int(v) for v in geo)
        if not transposed:
            Hp, Wp = H + 2 * ph, W + 2 * pw
            Ho, Wo = Geometry(*geo).conv_out(H, W)
            oy, ox = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
            taps = [(c, i, j) for j in range(kw) for i in range(kh) for c in range(C)] if jfirst else \
                [(c, i, j) for c in range(C) for i in range(kh) for j in range(kw)]
            idx = np.stack([(c * Hp + oy * sh + i * dh) * Wp + ox * sw + j * dw for c, i, j in taps], -1)
            return idx.reshape(Ho * Wo, -1), (Ho, Wo)
        zero = C * H * W
        oy, ox = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
        cols = []
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    ny, nx = oy + ph - i * dh, ox + pw - j * dw
                    ok = (ny % sh == 0) & (nx % sw == 0)
                    iy, ix = ny // sh, nx // sw
                    ok &= (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
                    cols.append(np.where(ok, (c * H + iy) * W + ix, zero))
        return np.stack(cols, -1).reshape(Ho * Wo, -1), (Ho, Wo)

    def _gather_rows(self, t, C, H, W, geo, pad, jfirst):
        """(N, Ho·Wo, K) patches of codes t (N, C, H, W), padding holding `pad`."""
        g = self.g
        ph, pw = int(geo[4]), int(geo[5])
        padded = g.op("Pad", t, g.const(np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64), np.int64),
                      g.const(float(pad)), mode="constant")
        flat = g.op("Reshape", padded, g.const(np.array([0, -1], np.int64), np.int64))
        idx, (Ho, Wo) = self._patch_index(C, H, W, geo, jfirst)
        return g.op("Gather", flat, g.const(idx, np.int64), axis=1), (Ho, Wo)

    def _to_nchw(self, t, O, Ho, Wo):
        g = self.g
        return g.op("Reshape", g.op("Transpose", t, perm=[0, 2, 1]),
                    g.const(np.array([0, O, Ho, Wo], np.int64), np.int64))

    # ------------------------------------------------------------------ layers
    def leaf(self, name, rec, c, s, shape):
        g, t = self.g, rec["type"]
        if t == "Linear":
            pos, neg = self.input_codes(c, s, rec)
            y = self.array(pos, neg, np.asarray(rec["weight"], np.float64).T, rec)
            return y, float(rec["scale_y"]), shape[:-1] + (int(rec["weight"].shape[0]),)
        if t in ("Conv2d", "ConvTranspose2d"):
            return self.conv(c, s, shape, rec)
        if t == "ReLU":
            return g.relu(c), s, shape
        if t in ("MaxPool2d", "AvgPool2d"):
            return self.pool(c, s, shape, rec)
        if t in ("Flatten", "Reshape"):
            new = reshaped(rec, shape)
            return g.op("Reshape", c, g.const(np.array((0,) + new, np.int64), np.int64)), s, new
        if t == "Dropout":
            return c, s, shape
        if t == "LUT":
            return self.lut(c, s, shape, rec)
        if t == "Mean":
            return self.mean(c, s, shape, rec)
        if t == "GRU":
            return self.gru(c, s, shape, rec, name)
        raise ValueError(f"ONNX export: layer {name!r} of type {t} is not supported")  # pragma: no cover

    def conv(self, c, s, shape, rec):
        g = self.g
        conv1d = bool(rec.get("conv1d"))
        if conv1d:
            c = g.op("Unsqueeze", c, g.const(np.array([2], np.int64), np.int64))
            shape = (shape[0], 1, shape[1])
        C, H, W = shape
        geo = [int(v) for v in rec["geometry"]]
        kh, kw, G = geo[0], geo[1], geo[10]
        O = int(rec["out_channels"])
        transposed = rec["type"] == "ConvTranspose2d"
        mode = rec["handle_neg_in"]
        w = np.asarray(rec["weight"], np.float64)
        if rec.get("to_linear"):
            pos, neg = self.input_codes(c, s, rec)
            rp, (Ho, Wo) = self._gather_rows(pos, C, H, W, geo, _pad_code(rec), jfirst=True)
            rn = self._gather_rows(neg, C, H, W, geo, 0, jfirst=True)[0] if neg is not None else None
            wm = w.transpose(0, 3, 2, 1).reshape(O, -1).T
            y = self.array(rp, rn, wm, rec, out_clip=(-128, 127))
        else:
            pos, neg = self.input_codes(c, s, rec, signed=mode == "FALSE" and not transposed)
            cg, og = C // G, O // G

            def dense(wt):  # (K = C·kh·kw in (c, i, j) order, O), zero outside each group
                full = np.zeros((C, kh, kw, O))
                for gi in range(G):
                    if transposed:  # wt (Ci, Co/g, kh, kw)
                        full[gi * cg:(gi + 1) * cg, :, :, gi * og:(gi + 1) * og] = \
                            wt[gi * cg:(gi + 1) * cg].transpose(0, 2, 3, 1)
                    else:  # wt (O, C/g, kh, kw)
                        full[gi * cg:(gi + 1) * cg, :, :, gi * og:(gi + 1) * og] = \
                            wt[gi * og:(gi + 1) * og].transpose(1, 2, 3, 0)
                return full.reshape(-1, O)
            if transposed:
                Ho, Wo = Geometry(*geo).convT_out(H, W)
                idx, _ = self._patch_index(C, H, W, geo, False, transposed=True, Ho=Ho, Wo=Wo)

                def rows(t):
                    flat = g.op("Reshape", t, g.const(np.array([0, -1], np.int64), np.int64))
                    zcol = g.op("Mul", g.op("Slice", flat, g.const(np.array([0], np.int64), np.int64),
                                             g.const(np.array([1], np.int64), np.int64),
                                             g.const(np.array([1], np.int64), np.int64)), g.const(0.0))
                    return g.op("Gather", g.op("Concat", flat, zcol, axis=1), g.const(idx, np.int64), axis=1)
                rp, rn = rows(pos), (rows(neg) if neg is not None else None)
            else:
                rp, (Ho, Wo) = self._gather_rows(pos, C, H, W, geo, _pad_code(rec), jfirst=False)
                rn = self._gather_rows(neg, C, H, W, geo, 0, jfirst=False)[0] if neg is not None else None
            acc = g.op("MatMul", rp, g.const(dense(w)))
            if neg is not None:
                acc = g.op("Add", acc, g.op("MatMul", rn, g.const(dense(np.asarray(rec["weight_neg"], np.float64)))))
            lo, hi = code_range(int(rec["y_quant_bits"]))
            y = g.clip(g.requant(g.op("Add", acc, g.const(np.asarray(rec["bias_npu"], np.float64))), _requant_exp(rec),
                                 floors(rec)), lo, hi)
            if mode == "PN" and not transposed:
                y = g.clip(y, -128, 127)
        y = self._to_nchw(y, O, Ho, Wo)
        if conv1d:
            y = g.op("Squeeze", y, g.const(np.array([2], np.int64), np.int64))
            return y, float(rec["scale_y"]), (O, Wo)
        return y, float(rec["scale_y"]), (O, Ho, Wo)

    def pool(self, c, s, shape, rec):
        g = self.g
        C, H, W = shape
        (kh, kw), (sh, sw), (ph, pw) = rec["kernel_size"], rec["stride"], rec["padding"]
        avg = rec["type"] == "AvgPool2d"
        if avg:
            c = g.clip(self.codes(c, s, float(rec["scale_x"])), *code_range(int(rec["x_quant_bits"])))
            s = float(rec["scale_x"])
        pad = 0.0 if avg else -1e300
        padded = g.op("Pad", c, g.const(np.array([0, 0, ph, pw, 0, 0, ph, pw], np.int64), np.int64),
                      g.const(pad), mode="constant")
        Hp, Wp = H + 2 * ph, W + 2 * pw
        flat = g.op("Reshape", padded, g.const(np.array([0, C, Hp * Wp], np.int64), np.int64))
        Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
        oy, ox = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
        idx = np.stack([(oy * sh + i) * Wp + ox * sw + j for i in range(kh) for j in range(kw)], -1).reshape(Ho * Wo, -1)
        win = g.op("Gather", flat, g.const(idx, np.int64), axis=2)  # (N, C, Ho·Wo, kh·kw)
        if avg:
            y = g.op("ReduceSum", win, g.const(np.array([3], np.int64), np.int64), keepdims=0)
            y = g.clip(g.scale(y, -_lg(kh * kw, "kh·kw")), *code_range(int(rec["y_quant_bits"])))
        else:
            y = g.op("ReduceMax", win, keepdims=0, axes=[3])  # opset 17: axes an attribute
        return g.op("Reshape", y, g.const(np.array([0, C, Ho, Wo], np.int64), np.int64)), s, (C, Ho, Wo)

    def lut(self, c, s, shape, rec):
        g = self.g
        xb = int(rec["x_quant_bits"])
        lo, hi = code_range(xb, bool(rec.get("signed_in", True)))
        q = g.op("Sub", g.clip(self.codes(c, s, float(rec["scale_x"])), lo, hi), g.const(float(lo)))
        table = np.asarray(rec["lut"], np.float64)
        if rec.get("per_channel"):
            C, size = table.shape
            off = (np.arange(C) * size).reshape((C,) + (1,) * (len(shape) - 1)).astype(np.float64)
            q = g.op("Add", q, g.const(off))
            table = table.reshape(-1)
        return g.op("Gather", g.const(table), g.op("Cast", q, to=g.onnx.TensorProto.INT64), axis=0), \
            float(rec["scale_y"]), shape

    def mean(self, c, s, shape, rec):
        g = self.g
        sx = float(rec["scale_x"])
        q = g.clip(self.codes(c, s, sx), *code_range(int(rec["x_quant_bits"])))
        axes = list(mean_axes(rec, len(shape) + 1))
        if 0 in axes:
            raise ValueError("ONNX export: a Mean over the batch axis is not supported")
        full = (1,) + tuple(shape)
        n = int(np.prod([full[a] for a in axes]))
        keep = bool(rec["keepdim"])
        S = g.op("ReduceSum", q, g.const(np.array(axes, np.int64), np.int64), keepdims=int(keep))
        fl = g.op("Floor", g.op("Div", S, g.const(float(n))))
        r2 = g.op("Mul", g.op("Sub", S, g.op("Mul", fl, g.const(float(n)))), g.const(2.0))
        odd = g.op("Equal", g.op("Mod", fl, g.const(2.0), fmod=1), g.const(1.0))
        odd = g.op("Or", odd, g.op("Equal", g.op("Mod", fl, g.const(2.0), fmod=1), g.const(-1.0)))
        up = g.op("Or", g.op("Greater", r2, g.const(float(n))), g.op("And", g.op("Equal", r2, g.const(float(n))), odd))
        y = g.op("Add", fl, g.op("Cast", up, to=g.onnx.TensorProto.DOUBLE))
        new = tuple(1 if a + 1 in axes else d for a, d in enumerate(shape)) if keep else \
            tuple(d for a, d in enumerate(shape) if a + 1 not in axes)
        return g.clip(y, *code_range(int(rec["y_quant_bits"]))), sx, new

    def merge(self, name, rec, outs):
        g = self.g
        t = rec["type"]
        lo, hi, ylo, yhi, sl, sr, sy, ly = merge_constants(rec)
        (c1, s1, sh1), (c2, s2, sh2) = outs
        if t == "Add":
            sa = min(sl, sr)
            la = _lg(sa, "scale")
            q1, q2 = g.clip(self.codes(c1, s1, sa), lo, hi), g.clip(self.codes(c2, s2, sa), lo, hi)
            return g.clip(g.scale(g.op("Add", q1, q2), ly - la), ylo, yhi), sy, sh1
        q1, q2 = g.clip(self.codes(c1, s1, sl), lo, hi), g.clip(self.codes(c2, s2, sr), lo, hi)
        if t == "Mul":
            return g.clip(g.scale(g.op("Mul", q1, q2), ly - _lg(sl, "scale_x1") - _lg(sr, "scale_x2")), ylo, yhi), sy, sh1
        if t == "Cat":
            d = int(rec["dim"])
            a = g.clip(g.scale(q1, ly - _lg(sl, "scale_x1")), ylo, yhi)
            b = g.clip(g.scale(q2, ly - _lg(sr, "scale_x2")), ylo, yhi)
            ax = d % (len(sh1) + 1)
            new = tuple(v + sh2[i] if i + 1 == ax else v for i, v in enumerate(sh1))
            return g.op("Concat", a, b, axis=ax), sy, new
        if t == "Divide":
            size = hi - lo + 1
            idx = g.op("Add", g.op("Mul", g.op("Sub", q1, g.const(float(lo))), g.const(float(size))),
                       g.op("Sub", q2, g.const(float(lo))))
            table = g.const(np.asarray(rec["lut2"], np.float64).reshape(-1))
            return g.op("Gather", table, g.op("Cast", idx, to=g.onnx.TensorProto.INT64), axis=0), sy, sh1
        raise ValueError(f"ONNX export: merge op {t} is not supported")  # pragma: no cover

    def gru(self, c, s, shape, rec, name):
        g = self.g
        T, I = shape
        H = int(rec["hidden_size"])
        pn = rec["handle_neg_in"] == "PN"
        lo, hi = code_range(int(rec["y_quant_bits"]))
        off = float(-lo)

        def xcodes(a):  # (N, T, I) pos - neg at the array's input scale
            u = self.codes(c, s, float(rec[a + "_scale_x"]))
            if pn:
                return g.op("Sub", g.clip(g.relu(u), 0, 255), g.clip(g.relu(g.neg(u)), 0, 255))
            return g.clip(u, 0, 255)

        def hcodes(h, k):
            if pn:
                return g.op("Sub", g.clip(g.scale(g.relu(h), k), 0, 255), g.clip(g.scale(g.relu(g.neg(h)), k), 0, 255))
            return g.clip(g.scale(h, k), 0, 255)
        xz, xi = xcodes("zr"), xcodes("in")
        wzr = np.asarray(rec["zr_weight"], np.float64)
        Wzx, Wzh = g.const(wzr[:, :I].T), g.const(wzr[:, I:].T)
        Win, Whn = g.const(np.asarray(rec["in_weight"], np.float64).T), g.const(np.asarray(rec["hn_weight"], np.float64).T)
        bzr, bin_, bhn = (g.const(np.asarray(rec[a + "_bias_npu"], np.float64)) for a in ("zr", "in", "hn"))
        ezr, ein, ehn = (_requant_exp(rec, a + "_") for a in ("zr", "in", "hn"))
        fl = floors(rec)
        kzr = _lg(float(rec["zr_scale_x"]), "scale_x") - 7
        khn = _lg(float(rec["hn_scale_x"]), "scale_x") - 7
        lsig = g.const(np.asarray(rec["lut_sigmoid"], np.float64))
        ltanh = g.const(np.asarray(rec["lut_tanh"], np.float64))
        ones = g.const(float(rec["scale_ones"]))
        y_in = g.clip(g.requant(g.op("Add", g.op("MatMul", xi, Win), bin_), ein, fl), lo, hi)  # (N, T, H)
        zx = g.op("MatMul", xz, Wzx)  # (N, T, 2H)
        if self.stream:
            h = g.name(f"h_{name}")
            self.states.append((h, H))
        else:
            h = g.op("Mul", g.op("Slice", g.op("Reshape", xz, g.const(np.array([0, -1], np.int64), np.int64)),
                                  g.const(np.array([0], np.int64), np.int64), g.const(np.array([1], np.int64), np.int64),
                                  g.const(np.array([1], np.int64), np.int64)), g.const(np.zeros(H)))  # (N, H) zeros
        steps = []

        def at(t_, a):
            return g.op("Squeeze", g.op("Slice", a, g.const(np.array([t_], np.int64), np.int64),
                                         g.const(np.array([t_ + 1], np.int64), np.int64),
                                         g.const(np.array([1], np.int64), np.int64)),
                        g.const(np.array([1], np.int64), np.int64))

        def lut(table, v):
            return g.op("Gather", table, g.op("Cast", g.op("Add", v, g.const(off)), to=g.onnx.TensorProto.INT64), axis=0)
        for t_ in range(T):
            acc = g.op("Add", g.op("Add", at(t_, zx), g.op("MatMul", hcodes(h, kzr), Wzh)), bzr)
            yzr = g.clip(g.requant(acc, ezr, fl), lo, hi)
            z = lut(lsig, g.op("Slice", yzr, g.const(np.array([0], np.int64), np.int64), g.const(np.array([H], np.int64), np.int64),
                                g.const(np.array([1], np.int64), np.int64)))
            r = lut(lsig, g.op("Slice", yzr, g.const(np.array([H], np.int64), np.int64),
                                g.const(np.array([2 * H], np.int64), np.int64), g.const(np.array([1], np.int64), np.int64)))
            yhn = g.clip(g.requant(g.op("Add", g.op("MatMul", hcodes(h, khn), Whn), bhn), ehn, fl), lo, hi)
            n = lut(ltanh, g.clip(g.op("Add", at(t_, y_in), g.floor_shr(g.op("Mul", r, yhn), 7)), lo, hi))
            h = g.clip(g.floor_shr(g.op("Add", g.op("Mul", g.op("Sub", ones, z), n), g.op("Mul", z, h)), 7), -128, 127)
            steps.append(g.op("Unsqueeze", h, g.const(np.array([1], np.int64), np.int64)))
        if self.stream:
            self.state_out[self.states[-1][0]] = h
        if rec.get("return_sequences", True):
            return (steps[0] if T == 1 else g.op("Concat", *steps, axis=1)), 128.0, (T, H)
        return h, 128.0, (H,)


def onnx_model(records, input_shape, stream: bool = False):
    """An onnx.ModelProto of the records for inputs (N, *input_shape) float32 (stream: one frame (N, I) and the
    GRU states; input_shape is then (I,))."""
    onnx = need_onnx()
    TP = onnx.TensorProto
    g = _G(onnx)
    b = _Builder(g, "x", stream)
    shape = tuple(int(v) for v in input_shape)
    x = "x"
    inner = shape
    if stream:  # one frame: the model's per-step layers on (N, 1, I)
        c = g.op("Unsqueeze", x, g.const(np.array([1], np.int64), np.int64))
        inner = (1,) + shape
    else:
        c = x
    y, s, out_shape = b.run(records, c, None, inner)
    if s is None:
        raise ValueError("ONNX export: no layer quantizes the input; export a quantized (QAT) model")
    if stream:
        y = g.op("Squeeze", y, g.const(np.array([1], np.int64), np.int64))
        out_shape = out_shape[1:]
    yf = g.op("Div", g.op("Cast", y, to=TP.FLOAT), g.const(np.float32(s), np.float32))
    g.nodes.append(g.h.make_node("Identity", [yf], ["y"]))
    inputs = [g.h.make_tensor_value_info("x", TP.FLOAT, ["N", *shape])]
    outputs = [g.h.make_tensor_value_info("y", TP.FLOAT, ["N", *out_shape])]
    for hname, H in b.states:
        inputs.append(g.h.make_tensor_value_info(hname, TP.DOUBLE, ["N", H]))
        g.nodes.append(g.h.make_node("Identity", [b.state_out[hname]], [hname + "_out"]))
        outputs.append(g.h.make_tensor_value_info(hname + "_out", TP.DOUBLE, ["N", H]))
    graph = g.h.make_graph(g.nodes, "witnp_integer_model", inputs, outputs, g.inits)
    model = g.h.make_model(graph, opset_imports=[g.h.make_opsetid("", OPSET)], producer_name="witnp")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


