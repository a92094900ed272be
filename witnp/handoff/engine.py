"""The integer engine: runs an exported model (`witnp.handoff.export`) with integer arithmetic only and reproduces the
QAT model's outputs bit for bit (chip.md §2-§4 with power-of-two scales; noise is the chip's physics, not
part of the engine).

Every tensor between layers is integer codes c with a power-of-two scale s (value c/s). A layer that needs
x·sx computes c·2^k (k = log2 sx - log2 s), which is a left shift or a right shift rounding half to even,
exactly R(x·sx) of the float reference. Array layers accumulate in int64 and requantize by another such shift;
the bit split divides its digital part by G = 2^g the same way. Only the network input is float: it is
quantized once into the first layer's codes (the firmware's front end does the same).
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..array.conv.ops import Geometry
from .handoff_file import leaf_records, read_handoff
from .int_ops import gru_q_int, requant_shift, shift_round
from ..quant import code_range, pow2_exponent

__all__ = ["shift_round", "IntegerEngine"]  # shift_round: from int_ops, for the tests


def _log2(s: float, what: str) -> int:
    k = pow2_exponent(s)
    if k is None:
        raise ValueError(f"{what}={s} is not a power of two; the integer engine needs power-of-two scales")
    return k


def reshaped(rec, shape) -> tuple:
    """The per-example shape after a Flatten or Reshape record (shape: the per-example input shape)."""
    if rec["type"] == "Flatten":
        full = (1,) + tuple(shape)
        st, en = int(rec["start_dim"]) % len(full), int(rec["end_dim"]) % len(full)
        return (full[:st] + (int(np.prod(full[st:en + 1])),) + full[en + 1:])[1:]
    if rec["type"] == "Reshape":
        return tuple(int(v) for v in rec["sample_shape"])
    return tuple(shape)


def floors(rec) -> bool:
    """Whether an array record's requantization rounds down (LayerConfig.rounding "floor"); files written before
    the field existed round half to even. The one reading of that field for the engine, C and ONNX."""
    return rec.get("rounding", "round") == "floor"


def mean_axes(rec, ndim: int) -> tuple:
    """The axes (of a tensor with `ndim` dimensions, batch first) that a Mean record averages over: its `dims`
    (JSON: null for all, an int or a list), negative ones counted from the end."""
    dim = json.loads(rec["dims"])
    return tuple(range(ndim)) if dim is None else tuple(d % ndim for d in (dim if isinstance(dim, list) else [dim]))


def merge_constants(rec):
    """A two-input merge record's constants: (lo, hi) of its input codes, (ylo, yhi) of its output, the scales
    sl, sr, sy and log2(sy)."""
    lo, hi = code_range(int(rec["x_quant_bits"]))
    ylo, yhi = code_range(int(rec["y_quant_bits"]))
    sl, sr, sy = float(rec["scale_x1"]), float(rec["scale_x2"]), float(rec["scale_y"])
    return lo, hi, ylo, yhi, sl, sr, sy, _log2(sy, "scale_y")


def _requant_exp(rec, prefix=""):
    """log2(sy) - log2(sx) - log2(sw) of an array record: acc·sy/(sx·sw) is a shift by this."""
    return (_log2(rec[prefix + "scale_y"], "scale_y") - _log2(rec[prefix + "scale_x"], "scale_x")
            - _log2(rec[prefix + "scale_weight"], "scale_weight"))


def _scaled(c, s, sx):
    """R(v·sx) as int64 for a tensor v given as float32 values (s None: the network input, quantized exactly as
    the model does, x·sx in float32 then R) or as codes c with scale s (a rounding shift)."""
    if s is None:
        return np.rint((np.asarray(c, np.float32) * np.float32(sx)).astype(np.float32)).astype(np.int64)
    return shift_round(c, _log2(sx, "scale") - _log2(s, "input scale"))


def _input_codes(c, s_in, rec, signed=False):
    """Input codes of an array layer from (c, s_in) (chip.md §2-§4): unsigned FALSE, Shift (+s), PN branches
    (pos, neg), or the signed codes of Conv2d FALSE. Returns (pos, neg or None), int64.
    R(relu(±v)·sx) = max(±R(v·sx), 0) and R(v·sx + s) = R(v·sx) + s (s an integer), so one R(v·sx) serves."""
    xb, mode = int(rec["x_quant_bits"]), rec["handle_neg_in"]
    u = _scaled(c, s_in, rec["scale_x"])
    hi = code_range(xb, signed=False)[1]
    if mode == "PN":
        return np.clip(np.maximum(u, 0), 0, hi), np.clip(np.maximum(-u, 0), 0, hi)
    if signed:
        return np.clip(u, *code_range(xb)), None
    return np.clip(u + int(rec.get("shift", 0)), 0, hi), None


def _pad_code(rec):
    """The code of a zero input (what padding holds): s for Shift (clipped), else 0."""
    return min(int(rec.get("shift", 0)), (1 << int(rec["x_quant_bits"])) - 1) if rec["handle_neg_in"] == "Shift" else 0


def _rows(x, g: Geometry, pad, jfirst=False):
    """im2row on int64 NHWC codes: (B·Ho·Wo, kh·kw·C) with feature order (i, j, c) or (j, i, c)."""
    B, H, W, C = x.shape
    Ho, Wo = g.conv_out(H, W)
    xp = np.full((B, H + 2 * g.ph + g.sh, W + 2 * g.pw + g.sw, C), pad, np.int64)
    xp[:, g.ph:g.ph + H, g.pw:g.pw + W] = x
    cols = []
    order = [(i, j) for j in range(g.kw) for i in range(g.kh)] if jfirst else \
        [(i, j) for i in range(g.kh) for j in range(g.kw)]
    for i, j in order:
        cols.append(xp[:, i * g.dh:i * g.dh + g.sh * (Ho - 1) + 1:g.sh, j * g.dw:j * g.dw + g.sw * (Wo - 1) + 1:g.sw])
    return np.stack(cols, axis=3).reshape(B * Ho * Wo, -1), (Ho, Wo)


def _conv(x_nhwc, w, g: Geometry, pad):
    """Integer conv: x (B, H, W, C) int64, w (O, C/g, kh, kw) int -> acc (B, Ho, Wo, O) int64 (groups supported)."""
    B, H, W, C = x_nhwc.shape
    O = w.shape[0]
    cg, og = C // g.groups, O // g.groups
    outs = []
    for gi in range(g.groups):
        rows, (Ho, Wo) = _rows(x_nhwc[..., gi * cg:(gi + 1) * cg], g, pad)
        wm = w[gi * og:(gi + 1) * og].transpose(0, 2, 3, 1).reshape(og, -1).astype(np.int64)
        outs.append(rows @ wm.T)
    return np.concatenate(outs, axis=1).reshape(B, Ho, Wo, O)


def _convT(x_nhwc, w, g: Geometry, co):
    """Integer transposed conv: x (B, H, W, Ci), w (Ci, Co/g, kh, kw) -> (B, Ho, Wo, Co) int64 (scatter form)."""
    B, H, W, Ci = x_nhwc.shape
    Ho, Wo = g.convT_out(H, W)
    cig, cog = Ci // g.groups, co // g.groups
    full = np.zeros((B, Ho + 2 * g.ph + g.sh + g.dh * g.kh, Wo + 2 * g.pw + g.sw + g.dw * g.kw, co), np.int64)
    for gi in range(g.groups):
        xg = x_nhwc[..., gi * cig:(gi + 1) * cig]
        for i in range(g.kh):
            for j in range(g.kw):
                contrib = xg @ w[gi * cig:(gi + 1) * cig, :, i, j].astype(np.int64)
                full[:, i * g.dh:i * g.dh + g.sh * (H - 1) + 1:g.sh, j * g.dw:j * g.dw + g.sw * (W - 1) + 1:g.sw,
                     gi * cog:(gi + 1) * cog] += contrib
    return full[:, g.ph:g.ph + Ho, g.pw:g.pw + Wo]


def _geometry(rec) -> Geometry:
    return Geometry(*[int(v) for v in rec["geometry"]])


STREAMABLE_TYPES = ("GRU", "Linear", "LUT", "Sigmoid", "Tanh", "GELU", "ReLU", "Add", "Mul", "Divide", "Dropout",
                    "Sequential", "Residual", "Branches")
"""What step() can run one frame at a time: layers with no memory across time steps, and the GRU."""


def across_time(records):
    """(name, record) of the first leaf that reads across time steps (a convolution, pooling, Mean, Flatten, a
    GRU returning only its last state), or None when the model can run one frame at a time."""
    for name, rec in leaf_records(records):
        if rec["type"] not in STREAMABLE_TYPES or (rec["type"] == "GRU" and not rec.get("return_sequences", True)):
            return name, rec
    return None


def streams(records) -> bool:
    """Whether the model runs frame by frame with explicit GRU states (`IntegerEngine.step`, the C reference's
    witnp_step, the ONNX step graph): it has a GRU and nothing that reads across time."""
    return any(r["type"] == "GRU" for _, r in leaf_records(records)) and across_time(records) is None


class IntegerEngine:
    """Integer inference over the layer records of an export (`export.export_model` / a handoff file).

    run(x) takes the float network input and returns (final float output, {layer name: integer codes}).
    step(frame, state) runs one time step of a streamable model (GRUs returning every step, then per-frame
    layers) with the GRUs' states carried explicitly, as the firmware runs it frame by frame.
    """

    STREAMABLE = STREAMABLE_TYPES

    def __init__(self, records: List[Tuple[str, dict]]):
        self.records = records
        self._trace: Optional[dict] = None  # run(trace=True): each leaf's input codes and each GRU's states
        self._h_in: Optional[Dict[str, np.ndarray]] = None   # step(): each GRU's state before the frame
        self._h_out: Dict[str, np.ndarray] = {}             # and after it

    @classmethod
    def from_file(cls, path):
        return cls(read_handoff(path))

    def run(self, x, trace: bool = False):
        """(float output, {layer: output codes}); with trace, also {"inputs": {layer: input codes}, "states":
        {GRU layer: (N, T, H) Q7 states after every step}, "inputs_in": {GRU layer: input codes at its in
        array's scale}, "out_scale"} (`_trace_inputs` says which codes)."""
        if trace:
            self._trace = {"inputs": {}, "inputs_in": {}, "states": {}}
            try:
                y, codes = self._run(x)
                return y, codes, self._trace
            finally:
                self._trace = None
        return self._run(x)

    def _run(self, x) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        # The network input stays float (s None) until each op that quantizes it does so exactly as the model
        # (x·sx in float32, then R); from there on everything is integer codes with power-of-two scales.
        codes: Dict[str, np.ndarray] = {}
        c, s = self._seq(self.records, np.asarray(x, np.float32), None, codes)
        if self._trace is not None:
            self._trace["out_scale"] = s
        if s is None:
            return c, codes
        return (c.astype(np.float32) / np.float32(s)).astype(np.float32), codes

    def step(self, frame, state: Optional[Dict[str, np.ndarray]] = None):
        """One frame: frame (N, ...) float32, the model's input at one time step (a model over (N, T, I) takes
        (N, I)); state {GRU layer name: (N, H) int64 Q7 codes} from the previous step (None: every GRU at
        h = 0, as `run` starts). Returns (y (N, ...) float32, this frame's output; the new state). Stepping
        through a sequence gives `run`'s outputs bit for bit. Models with a layer that reads across time
        steps (a convolution, pooling, Mean, Flatten, a GRU returning only its last state) are refused,
        naming it."""
        blocker = across_time(self.records)
        if blocker is not None:
            name, rec = blocker
            raise ValueError(f"step: layer {name!r} ({rec.get('op', rec['type'])}) reads across time steps; "
                             f"only GRUs returning every step and per-frame layers stream")
        frame = np.asarray(frame, np.float32)
        self._h_in, self._h_out = dict(state or {}), {}
        try:
            y, _ = self.run(frame[:, None])
        finally:
            self._h_in = None
        return y[:, 0], self._h_out

    def _seq(self, records, c, s, codes):
        for name, rec in records:
            c, s = self._node(name, rec, c, s, codes)
        return c, s

    def _node(self, name, rec, c, s, codes):
        t = rec["type"]
        if self._trace is not None and t not in ("Sequential", "Residual", "Branches"):
            self._trace_inputs(name, rec, c, s)
        if t == "Sequential":
            return self._seq(rec["children"], c, s, codes)
        if t in ("Residual", "Branches"):
            kids = rec["children"]
            merge_name, merge = kids[-1]
            outs = [self._node(n, r, c, s, codes) for n, r in kids[:-1]]
            if t == "Residual" and len(outs) == 1:
                outs.append((c, s))  # identity shortcut
            c, s = self._merge(merge, outs)
            codes[merge_name] = c
            return c, s
        if t == "Linear":
            c, s = self._linear(c, s, rec)
        elif t in ("Conv2d", "ConvTranspose2d"):
            if rec.get("conv1d"):  # Conv1d: the kernel-height-1 Conv2d on (B, C, 1, T)
                c, s = self._conv_layer(c[:, :, None, :], s, rec)
                c = c[:, :, 0, :]
            else:
                c, s = self._conv_layer(c, s, rec)
        elif t == "ReLU":
            c = np.maximum(c, 0)
        elif t == "MaxPool2d":
            c = self._maxpool(c, rec)
        elif t == "AvgPool2d":
            c, s = self._avgpool(c, s, rec)
        elif t == "Flatten":
            st, en = int(rec["start_dim"]) % c.ndim, int(rec["end_dim"]) % c.ndim
            c = c.reshape(c.shape[:st] + (-1,) + c.shape[en + 1:])
        elif t == "Reshape":
            c = c.reshape((c.shape[0],) + tuple(int(v) for v in rec["sample_shape"]))
        elif t == "Dropout":
            pass
        elif t in ("LUT", "Sigmoid", "Tanh", "GELU"):
            c, s = self._lut(c, s, rec)
        elif t == "Mean":
            c, s = self._mean(c, s, rec)
        elif t == "GRU":
            c, s = self._gru(c, s, rec, name)
        else:  # pragma: no cover - export refuses these first
            raise ValueError(f"integer engine: layer {name!r} of type {t} is not supported")
        if s is not None:
            codes[name] = c
        return c, s

    def _trace_inputs(self, name, rec, c, s):
        """The integer codes a leaf takes in: its input at its own input scale, R(v·scale_x), before any clip
        or PN split (a GRU: at zr_scale_x, and in "inputs_in" at in_scale_x); a layer without an input scale
        (ReLU, pooling, reshapes): the incoming codes. Nothing for a layer that meets the float input unscaled."""
        ins = self._trace["inputs"]
        if rec["type"] == "GRU":
            ins[name] = _scaled(c, s, rec["zr_scale_x"])
            self._trace["inputs_in"][name] = _scaled(c, s, rec["in_scale_x"])
        elif "scale_x" in rec:
            ins[name] = _scaled(c, s, rec["scale_x"])
        elif s is not None:
            ins[name] = np.asarray(c, np.int64)

    def _merge(self, rec, outs):
        """Two-input digital ops (chip.md §8) on codes: Add, Mul, Cat; Divide by its table."""
        t = rec["type"]
        lo, hi, ylo, yhi, sl, sr, sy, ly = merge_constants(rec)
        (c1, s1), (c2, s2) = outs
        if t == "Add":
            sa = min(sl, sr)
            la = _log2(sa, "scale")
            q1 = np.clip(_scaled(c1, s1, sa), lo, hi)
            q2 = np.clip(_scaled(c2, s2, sa), lo, hi)
            return np.clip(shift_round(q1 + q2, ly - la), ylo, yhi), sy
        q1 = np.clip(_scaled(c1, s1, sl), lo, hi)
        q2 = np.clip(_scaled(c2, s2, sr), lo, hi)
        if t == "Mul":
            return np.clip(shift_round(q1 * q2, ly - _log2(sl, "scale_x1") - _log2(sr, "scale_x2")), ylo, yhi), sy
        if t == "Cat":
            a = np.clip(shift_round(q1, ly - _log2(sl, "scale_x1")), ylo, yhi)
            b = np.clip(shift_round(q2, ly - _log2(sr, "scale_x2")), ylo, yhi)
            return np.concatenate([a, b], axis=int(rec["dim"])), sy
        if t == "Divide":
            return rec["lut2"][q1 - lo, q2 - lo].astype(np.int64), sy
        raise ValueError(f"integer engine: merge op {t} is not supported")  # pragma: no cover

    # ------------------------------------------------------------------ layers
    def _linear(self, c, s, rec):
        pos, neg = _input_codes(c, s, rec)
        return self._array(pos, neg, rec, out_clip=None)

    @staticmethod
    def _array(pos, neg, rec, out_clip):
        """Linear rules (chip.md §2/§3) on codes pos (and neg for PN): returns (y codes, sy)."""
        xb, yb = int(rec["x_quant_bits"]), int(rec["y_quant_bits"])
        wq = rec["weight"].astype(np.int64)
        e = _requant_exp(rec)
        lo, hi = code_range(yb)
        lo2, hi2 = out_clip if out_clip is not None else (lo, hi)
        b = rec["bias_npu"].astype(np.int64)
        fl = floors(rec)
        if xb > 8:
            parts = [(p >> 8, p & 255) for p in ((pos,) if neg is None else (pos, neg))]
            xd = parts[0][0] - (parts[1][0] if neg is not None else 0)
            xl = parts[0][1] - (parts[1][1] if neg is not None else 0)
            yl = np.clip(requant_shift(xl @ wq.T + b, e, fl), lo, hi)
            g = _log2(rec["G"], "G")
            yd = requant_shift(256 * (xd @ wq.T) + rec["bias_d"].astype(np.int64), -g, fl)
            y = np.clip(yl + yd, lo2, hi2)
        else:
            xs = pos - (neg if neg is not None else 0)
            y = np.clip(np.clip(requant_shift(xs @ wq.T + b, e, fl), lo, hi), lo2, hi2)
        return y, float(rec["scale_y"])

    def _conv_layer(self, c, s, rec):
        g = _geometry(rec)
        yb = int(rec["y_quant_bits"])
        mode = rec["handle_neg_in"]
        transposed = rec["type"] == "ConvTranspose2d"
        if rec.get("to_linear"):  # Linear rules on (kw, kh, ci)-ordered patches, int8 output
            pos, neg = _input_codes(c, s, rec)
            rows_p, (Ho, Wo) = _rows(pos.transpose(0, 2, 3, 1), g, _pad_code(rec), jfirst=True)
            rows_n = _rows(neg.transpose(0, 2, 3, 1), g, 0, jfirst=True)[0] if neg is not None else None
            w = rec["weight"]
            y, sy = self._array(rows_p, rows_n, dict(rec, weight=w.transpose(0, 3, 2, 1).reshape(w.shape[0], -1)),
                                out_clip=(-128, 127))
            return y.reshape(c.shape[0], Ho, Wo, -1).transpose(0, 3, 1, 2), sy
        pos, neg = _input_codes(c, s, rec, signed=mode == "FALSE" and not transposed)
        pos = pos.transpose(0, 2, 3, 1)
        neg = neg.transpose(0, 2, 3, 1) if neg is not None else None
        e = _requant_exp(rec)
        co = int(rec["out_channels"])
        w = rec["weight"].astype(np.int64)
        if transposed:
            acc = _convT(pos, w, g, co)
            if neg is not None:
                acc = acc + _convT(neg, rec["weight_neg"].astype(np.int64), g, co)
        else:
            acc = _conv(pos, w, g, _pad_code(rec))
            if neg is not None:
                acc = acc + _conv(neg, rec["weight_neg"].astype(np.int64), g, 0)
        lo, hi = code_range(yb)
        y = np.clip(requant_shift(acc + rec["bias_npu"].astype(np.int64), e, floors(rec)), lo, hi)
        if mode == "PN" and not transposed:
            y = np.clip(y, -128, 127)
        return y.transpose(0, 3, 1, 2), float(rec["scale_y"])

    @staticmethod
    def _maxpool(c, rec):
        (kh, kw), (sh, sw), (ph, pw) = rec["kernel_size"], rec["stride"], rec["padding"]
        low = np.iinfo(np.int64).min if c.dtype.kind == "i" else -np.inf
        cp = np.pad(c, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=low)
        win = np.lib.stride_tricks.sliding_window_view(cp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        return win.max(axis=(-2, -1))

    @staticmethod
    def _avgpool(c, s, rec):
        """y = clip(R(ΣXq / n), Y(yb)) over each window (zero padding counted), n = kh·kw a power of two: a
        rounding shift; the input scale kept."""
        (kh, kw), (sh, sw), (ph, pw) = rec["kernel_size"], rec["stride"], rec["padding"]
        q = np.clip(_scaled(c, s, rec["scale_x"]), *code_range(int(rec["x_quant_bits"])))
        qp = np.pad(q, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        S = np.lib.stride_tricks.sliding_window_view(qp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw].sum(axis=(-2, -1))
        k = _log2(kh * kw, "kh·kw")
        return np.clip(shift_round(S, -k), *code_range(int(rec["y_quant_bits"]))), float(rec["scale_x"])

    @staticmethod
    def _lut(c, s, rec):
        """Single-input digital ops by their tables over input codes (per channel on axis 1 when per_channel)."""
        xb = int(rec["x_quant_bits"])
        signed = bool(rec.get("signed_in", True))
        lo, hi = code_range(xb, signed)
        q = np.clip(_scaled(c, s, rec["scale_x"]), lo, hi) - lo
        lut = rec["lut"]
        if rec.get("per_channel"):
            ch = np.arange(c.shape[1]).reshape((1, -1) + (1,) * (c.ndim - 2))
            return lut[ch, q].astype(np.int64), float(rec["scale_y"])
        return lut[q].astype(np.int64), float(rec["scale_y"])

    @staticmethod
    def _mean(c, s, rec):
        """y = clip(R(ΣXq / n), Y(yb)) at the input scale, R an exact rational rounding half to even."""
        xb, yb = int(rec["x_quant_bits"]), int(rec["y_quant_bits"])
        q = np.clip(_scaled(c, s, rec["scale_x"]), *code_range(xb))
        axes = mean_axes(rec, q.ndim)
        n = int(np.prod([q.shape[a] for a in axes]))
        S = q.sum(axis=axes, keepdims=bool(rec["keepdim"]))
        fl = S // n
        r2 = 2 * (S - fl * n)
        y = fl + ((r2 > n) | ((r2 == n) & (fl % 2 == 1)))
        return np.clip(y, *code_range(yb)), float(rec["scale_x"])

    def _gru(self, c, s, rec, name):
        """The quantized GRU (docs/gru.md) with integers only: `int_ops.gru_q_int` on its input codes."""
        pn = rec["handle_neg_in"] == "PN"

        def xcodes(a):
            u = _scaled(c, s, rec[a + "_scale_x"])
            if pn:
                return np.clip(np.maximum(u, 0), 0, 255), np.clip(np.maximum(-u, 0), 0, 255)
            return np.clip(u, 0, 255), np.zeros_like(u)

        def e(a):
            return _requant_exp(rec, a + "_")
        N, H = c.shape[0], int(rec["hidden_size"])
        h0 = np.zeros((N, H), np.int64)
        if self._h_in is not None and name in self._h_in:
            h0 = np.asarray(self._h_in[name], np.int64)
            if h0.shape != (N, H):
                raise ValueError(f"step: state of {name!r} has shape {h0.shape}; expected ({N}, {H})")
        hq = gru_q_int(xcodes("zr"), xcodes("in"), h0, rec["zr_weight"], rec["in_weight"],
                       rec["hn_weight"], rec["zr_bias_npu"].astype(np.int64), rec["in_bias_npu"].astype(np.int64),
                       rec["hn_bias_npu"].astype(np.int64), e("zr"), e("in"), e("hn"),
                       _log2(rec["zr_scale_x"], "scale_x") - 7, _log2(rec["hn_scale_x"], "scale_x") - 7,
                       int(rec["y_quant_bits"]), pn, int(rec["scale_ones"]), rec["lut_sigmoid"].astype(np.int64),
                       rec["lut_tanh"].astype(np.int64), floor=floors(rec))
        if self._h_in is not None:
            self._h_out[name] = hq[:, -1].copy()
        if self._trace is not None:
            self._trace["states"][name] = hq.copy()
        if not bool(rec.get("return_sequences", True)):  # the last state (N, H); older files: every step
            hq = hq[:, -1]
        return hq, 128.0
