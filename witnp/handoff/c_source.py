"""`witnp export --c-source model.c`: a self-contained C99 reference of the integer model (docs/firmware-export.md).

The file holds the layer records' integer arrays as `static const` tables, the integer engine's arithmetic
(`c_runtime.c`, included verbatim: rounding shifts half to even, clips, the array rules with PN, Shift and the
bit split, convolutions, pooling, tables, Mean, the GRU step) and, generated from the records, the calls for
one example. No allocation (static buffers sized here), no floating point after the input quantization
(x·sx in float32, rounded half to even by nearbyintf, as the model does).

API (one example at a time; `WITNP_INPUT_SIZE` floats in, `WITNP_OUTPUT_SIZE` int32 codes out, the value of a
code is code / WITNP_OUTPUT_SCALE):
    void witnp_forward(const float *x, int32_t *y);                  the whole input (sequences: all frames)
and for models that stream (GRUs returning every step, then per-frame layers):
    typedef struct { int64_t h_<layer>[H]; ... } witnp_state;       one GRU state per GRU, caller-owned
    void witnp_state_init(witnp_state *s);                           h = 0, as witnp_forward starts
    void witnp_step(const float *frame, witnp_state *s, int32_t *y);  one frame (WITNP_FRAME_SIZE floats)

Runs every layer the integer engine runs: Linear, Conv1d/Conv2d (with to_linear), ConvTranspose2d, ReLU,
MaxPool2d, AvgPool2d, Flatten, Reshape, Dropout, the table ops (Sigmoid, Tanh, GELU, PReLU, Sqrt, BatchNorm),
Mean, GRU, and Residual / Branches with their merges (Add, Mul, Cat, Divide); each op writes its own static
buffer.
"""
from __future__ import annotations

import os
import re
from typing import List, Tuple

import numpy as np

from ..quant import code_range
from .atomic import write_text
from .engine import (IntegerEngine, streams, _log2 as _lg, _pad_code, _requant_exp, floors, mean_axes,
                     merge_constants, reshaped)
from .handoff_file import leaf_records
from .record_walk import RecordWalk

__all__ = ["c_source", "write_c_source"]

RUNTIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_runtime.c")


class _Emitter:
    def __init__(self):
        self.tables: List[str] = []
        self.names = set()

    def table(self, name: str, a: np.ndarray, ctype: str) -> str:
        if name not in self.names:
            self.names.add(name)
            flat = np.asarray(a).reshape(-1)
            vals = ", ".join(str(int(v)) for v in flat) if flat.size else "0"
            self.tables.append(f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{vals}}};")
        return name


def _fl(rec) -> int:
    """1 when the record's arrays round down (LayerConfig.rounding "floor")."""
    return int(floors(rec))


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


class _Body(RecordWalk):
    """C statements for one example: every op writes its own static buffer (a_<k>, sized for its output), so
    Residual and Branches paths read their input while the other path runs; no allocation."""

    def __init__(self, codes, em: _Emitter, stream: bool, prefix: str):
        self.codes, self.em, self.stream, self.prefix = codes, em, stream, prefix
        self.lines: List[str] = []
        self.buffers: List[Tuple[str, int]] = []
        self.biggest = 1

    def buf(self, n: int) -> str:
        name = f"{self.prefix}{len(self.buffers)}"
        self.buffers.append((name, max(int(n), 1)))
        self.biggest = max(self.biggest, int(n))
        return name

    def merge(self, name, rec, outs):
        t, idn = rec["type"], _ident(name)
        out_shape = self.codes[name].shape[1:]
        n = int(np.prod(out_shape))
        out = self.buf(n)
        lo, hi, ylo, yhi, sl, sr, sy, ly = merge_constants(rec)
        (c1, s1, sh1), (c2, s2, sh2) = outs

        def arg(c, s_, sx):  # (codes, float input, k) of an operand at scale sx
            if c is None:
                return "(const int64_t *)0", "xf", 0, sx
            return c, "(const float *)0", _lg(sx, "scale") - _lg(s_, "input scale"), sx
        if t in ("Add", "Mul", "Divide"):
            if t == "Add":
                sa = min(sl, sr)
                a1, a2 = arg(c1, s1, sa), arg(c2, s2, sa)
                mode, ko = 0, ly - _lg(sa, "scale")
                table = "(const int32_t *)0"
            elif t == "Mul":
                a1, a2 = arg(c1, s1, sl), arg(c2, s2, sr)
                mode, ko = 1, ly - _lg(sl, "scale_x1") - _lg(sr, "scale_x2")
                table = "(const int32_t *)0"
            else:
                a1, a2 = arg(c1, s1, sl), arg(c2, s2, sr)
                mode, ko = 2, 0
                table = self.em.table(f"w_{idn}_lut2", rec["lut2"], "int32_t")
            self.lines.append(f"w_merge2({out}, {a1[0]}, {a1[1]}, {a1[2]}, {a1[3]!r}f, {a2[0]}, {a2[1]}, {a2[2]}, "
                              f"{a2[3]!r}f, {n}, {lo}, {hi}, {mode}, {ko}, {ylo}, {yhi}, {table});")
            return out, sy, out_shape
        if t == "Cat":
            d = int(rec["dim"]) % (len(sh1) + 1)
            outer = int(np.prod(sh1[:d - 1]))
            ia, ib = int(np.prod(sh1[d - 1:])), int(np.prod(sh2[d - 1:]))
            a1, a2 = arg(c1, s1, sl), arg(c2, s2, sr)
            self.lines.append(f"w_cat({out}, {a1[0]}, {a1[1]}, {a1[2]}, {a1[3]!r}f, {ly - _lg(sl, 'scale_x1')}, "
                              f"{a2[0]}, {a2[1]}, {a2[2]}, {a2[3]!r}f, {ly - _lg(sr, 'scale_x2')}, {outer}, {ia}, {ib}, "
                              f"{lo}, {hi}, {ylo}, {yhi});")
            return out, sy, out_shape
        raise ValueError(f"C reference: merge {name!r} ({t}) is not supported")  # pragma: no cover

    def leaf(self, name, rec, cur, s, shape):
        t, idn = rec["type"], _ident(name)
        em = self.em
        stream = self.stream
        if t in ("Flatten", "Reshape", "Dropout"):
            return cur, s, (self.codes[name].shape[1:] if name in self.codes else reshaped(rec, shape))
        if cur is None and t in ("ReLU", "MaxPool2d"):
            raise ValueError(f"C reference: layer {name!r} ({t}) acts on the float network input; start the "
                             f"model with a layer that quantizes it (an array layer or a digital op)")
        out_shape = self.codes[name].shape[1:]
        n_in, n_out = int(np.prod(shape)), int(np.prod(out_shape))
        self.biggest = max(self.biggest, n_in, n_out)
        out = self.buf(n_out)
        c, xf = ("(const int64_t *)0", "xf") if cur is None else (cur, "(const float *)0")
        lines = self.lines

        def kin(sx):
            return 0 if s is None else _lg(sx, "scale") - _lg(s, "input scale")

        if t == "Linear":
            xb, yb, sx = int(rec["x_quant_bits"]), int(rec["y_quant_bits"]), float(rec["scale_x"])
            K, O = shape[-1], int(rec["weight"].shape[0])
            split = xb > 8
            lo, hi = code_range(yb)
            w = em.table(f"w_{idn}_w", rec["weight"], "int8_t")
            b = em.table(f"w_{idn}_b", rec["bias_npu"], "int32_t")
            bd = em.table(f"w_{idn}_bd", rec["bias_d"], "int32_t")
            g = _lg(rec["G"], "G") if split else 0
            shift = int(rec.get("shift", 0)) if rec["handle_neg_in"] == "Shift" else 0
            lines.append(f"w_linear({out}, wpos, wneg, {c}, {xf}, {n_in // K}, {K}, {O}, {kin(sx)}, {sx!r}f, {w}, "
                         f"{b}, {bd}, {int(rec['handle_neg_in'] == 'PN')}, {shift}, {(1 << xb) - 1}, {int(split)}, "
                         f"{_requant_exp(rec)}, {g}, {lo}, {hi}, {lo}, {hi}, {_fl(rec)});")
            s = float(rec["scale_y"])
        elif t in ("Conv2d", "ConvTranspose2d"):
            xb, yb, sx = int(rec["x_quant_bits"]), int(rec["y_quant_bits"]), float(rec["scale_x"])
            C, H, W = (shape[0], 1, shape[1]) if rec.get("conv1d") else shape
            O = int(rec["out_channels"])
            Ho, Wo = (1, out_shape[1]) if rec.get("conv1d") else out_shape[1:]
            pn = rec["handle_neg_in"] == "PN"
            transposed = t == "ConvTranspose2d"
            to_linear = bool(rec.get("to_linear"))
            signed = rec["handle_neg_in"] == "FALSE" and not transposed and not to_linear
            shift = int(rec.get("shift", 0)) if rec["handle_neg_in"] == "Shift" else 0
            slo, shi = code_range(xb)
            lines.append(f"w_conv_codes(wpos, wneg, {c}, {xf}, {n_in}, {kin(sx)}, {sx!r}f, {int(pn)}, {int(signed)}, "
                         f"{shift}, {slo}, {shi}, {(1 << xb) - 1});")
            geo = em.table(f"w_{idn}_geo", rec["geometry"], "int32_t")
            b = em.table(f"w_{idn}_b", rec["bias_npu"], "int32_t")
            lo, hi = code_range(yb)
            neg = "wneg" if pn else "(const int64_t *)0"
            if to_linear:
                wt = rec["weight"]
                w2 = wt.transpose(0, 3, 2, 1).reshape(wt.shape[0], -1)
                w = em.table(f"w_{idn}_w", w2, "int8_t")
                bd = em.table(f"w_{idn}_bd", rec["bias_d"], "int32_t")
                split = xb > 8
                g = _lg(rec["G"], "G") if split else 0
                lines.append(f"w_conv_linear({out}, wpos, {neg}, {C}, {H}, {W}, {O}, {Ho}, {Wo}, {geo}, {w}, {b}, {bd}, "
                             f"{_pad_code(rec)}, {int(split)}, {_requant_exp(rec)}, {g}, {lo}, {hi}, {_fl(rec)});")
            else:
                w = em.table(f"w_{idn}_w", rec["weight"], "int8_t")
                wn = em.table(f"w_{idn}_wn", rec["weight_neg"], "int8_t") if pn else "(const int8_t *)0"
                if transposed:
                    lines.append(f"w_conv_t({out}, wacc, wpos, {neg}, {C}, {H}, {W}, {O}, {Ho}, {Wo}, {geo}, {w}, {wn}, "
                                 f"{b}, {_requant_exp(rec)}, {lo}, {hi}, {_fl(rec)});")
                else:
                    lines.append(f"w_conv2d({out}, wpos, {neg}, {C}, {H}, {W}, {O}, {Ho}, {Wo}, {geo}, {w}, {wn}, {b}, "
                                 f"{_pad_code(rec)}, {_requant_exp(rec)}, {lo}, {hi}, {int(pn)}, {_fl(rec)});")
            s = float(rec["scale_y"])
        elif t == "ReLU":
            lines.append(f"{{ int i; for (i = 0; i < {n_in}; i++) {out}[i] = {cur}[i] > 0 ? {cur}[i] : 0; }}")
        elif t == "MaxPool2d":
            (kh, kw), (sh, sw), (ph, pw) = rec["kernel_size"], rec["stride"], rec["padding"]
            C, H, W = shape
            lines.append(f"w_maxpool({out}, {cur}, {C}, {H}, {W}, {out_shape[1]}, {out_shape[2]}, {kh}, {kw}, {sh}, "
                         f"{sw}, {ph}, {pw});")
        elif t == "AvgPool2d":
            (kh, kw), (sh, sw), (ph, pw) = rec["kernel_size"], rec["stride"], rec["padding"]
            C, H, W = shape
            sx = float(rec["scale_x"])
            xlo, xhi = code_range(int(rec["x_quant_bits"]))
            lo, hi = code_range(int(rec["y_quant_bits"]))
            lines.append(f"w_avgpool({out}, {c}, {xf}, {C}, {H}, {W}, {out_shape[1]}, {out_shape[2]}, {kh}, {kw}, "
                         f"{sh}, {sw}, {ph}, {pw}, {kin(sx)}, {sx!r}f, {xlo}, {xhi}, {_lg(kh * kw, 'kh·kw')}, {lo}, {hi});")
            s = sx
        elif t == "LUT":
            xb, sx = int(rec["x_quant_bits"]), float(rec["scale_x"])
            lo, hi = code_range(xb, bool(rec.get("signed_in", True)))
            lut = em.table(f"w_{idn}_lut", rec["lut"], "int32_t")
            per = bool(rec.get("per_channel"))
            channels = int(rec["lut"].shape[0]) if per else 1
            inner = n_in // channels if per else 1
            lines.append(f"w_lut({out}, {c}, {xf}, {n_in}, {kin(sx)}, {sx!r}f, {lo}, {hi}, {lut}, {hi - lo + 1}, "
                         f"{int(per)}, {inner}, {channels});")
            s = float(rec["scale_y"])
        elif t == "Mean":
            full = (1,) + tuple(shape)
            axes = mean_axes(rec, len(full))
            if 0 in axes:
                raise ValueError(f"C reference: layer {name!r} (Mean) averages over the batch; it runs one example")
            keep = [a - 1 for a in range(1, len(full)) if a not in axes]
            idx = np.indices(shape).reshape(len(shape), -1)
            kept_shape = [shape[a] for a in keep]
            mp = np.ravel_multi_index(tuple(idx[a] for a in keep), kept_shape) if keep else np.zeros(n_in, np.int64)
            table = em.table(f"w_{idn}_map", mp, "int32_t")
            sx = float(rec["scale_x"])
            xlo, xhi = code_range(int(rec["x_quant_bits"]))
            lo, hi = code_range(int(rec["y_quant_bits"]))
            cnt = int(np.prod([full[a] for a in axes]))
            lines.append(f"w_mean({out}, {c}, {xf}, {n_in}, {n_out}, {table}, {cnt}, {kin(sx)}, {sx!r}f, {xlo}, {xhi}, "
                         f"{lo}, {hi});")
            s = sx
        elif t == "GRU":
            T, I = shape
            H = int(rec["hidden_size"])
            pn = rec["handle_neg_in"] == "PN"
            lo, hi = code_range(int(rec["y_quant_bits"]))
            zsx, isx = float(rec["zr_scale_x"]), float(rec["in_scale_x"])
            tabs = {a: (em.table(f"w_{idn}_{a}_w", rec[f"{a}_weight"], "int8_t"),
                        em.table(f"w_{idn}_{a}_b", rec[f"{a}_bias_npu"], "int32_t")) for a in ("zr", "in", "hn")}
            ls = em.table(f"w_{idn}_lsig", rec["lut_sigmoid"], "int32_t")
            lt = em.table(f"w_{idn}_ltanh", rec["lut_tanh"], "int32_t")
            h = f"st->h_{idn}" if stream else f"h_{idn}"
            if not stream:
                lines.append(f"{{ int i; for (i = 0; i < {H}; i++) h_{idn}[i] = 0; }}")
            seq = bool(rec.get("return_sequences", True))
            lines.append(
                f"{{ int t, o; for (t = 0; t < {T}; t++) {{\n"
                f"    w_gru_xcodes(wxz, {c}, {xf}, t * {I}, {I}, {kin(zsx)}, {zsx!r}f, {int(pn)});\n"
                f"    w_gru_xcodes(wxi, {c}, {xf}, t * {I}, {I}, {kin(isx)}, {isx!r}f, {int(pn)});\n"
                f"    w_gru_step({h}, wxz, wxi, {I}, {H}, {tabs['zr'][0]}, {tabs['in'][0]}, {tabs['hn'][0]}, "
                f"{tabs['zr'][1]}, {tabs['in'][1]}, {tabs['hn'][1]}, {_requant_exp(rec, 'zr_')}, "
                f"{_requant_exp(rec, 'in_')}, {_requant_exp(rec, 'hn_')}, {_lg(zsx, 'scale_x') - 7}, "
                f"{_lg(float(rec['hn_scale_x']), 'scale_x') - 7}, {int(pn)}, {lo}, {hi}, {int(rec['scale_ones'])}, "
                f"{ls}, {lt}, wgru, {_fl(rec)});\n"
                + (f"    for (o = 0; o < {H}; o++) {out}[t * {H} + o] = {h}[o];\n" if seq else "")
                + "} "
                + ("" if seq else f"for (o = 0; o < {H}; o++) {out}[o] = {h}[o]; ")
                + "}")
            s = 128.0
        return out, s, out_shape


def c_source(records, input_shape) -> str:
    """The C99 reference of an export's records for one example of `input_shape` (the model's input without the
    batch: (C, H, W), (T, I), (F,) ...)."""
    leaves = list(leaf_records(records))
    in_shape = tuple(int(v) for v in input_shape)
    em = _Emitter()

    def body(shape, stream, prefix):
        _, codes = IntegerEngine(records).run(np.zeros((1,) + tuple(shape), np.float32))
        b = _Body(codes, em, stream, prefix)
        out, scale, out_shape = b.run(records, None, None, tuple(shape))
        if out is None or scale is None:
            raise ValueError("C reference: no layer quantizes the input; export a quantized (QAT) model")
        b.lines.append(f"{{ int i; for (i = 0; i < {int(np.prod(out_shape))}; i++) y[i] = (int32_t){out}[i]; }}")
        return b, scale, out_shape
    fwd, scale, out_shape = body(in_shape, False, "a_")
    grus = [(name, rec) for name, rec in leaves if rec["type"] == "GRU"]
    stream = streams(records)
    stp, frame, f_out = None, None, None
    if stream:
        frame = (1,) + in_shape[1:]
        stp, _, f_out = body(frame, True, "s_")
    big = max(fwd.biggest, stp.biggest if stp else 1)
    H_max = max([int(r["hidden_size"]) for _, r in grus] or [1])
    I_max = max([int(r["input_size"]) for _, r in grus] or [1])
    out = ["/* witnp C reference of the integer model (docs/firmware-export.md): C99, no allocation, no floating",
           f" * point after the input quantization. Input {in_shape} float32 per example; output "
           f"{tuple(out_shape)} int32 codes. */",
           "#include <stdint.h>", "#include <math.h>", "",
           f"#define WITNP_INPUT_SIZE {int(np.prod(in_shape))}",
           f"#define WITNP_OUTPUT_SIZE {int(np.prod(out_shape))}",
           f"#define WITNP_OUTPUT_SCALE {scale!r}f /* a code's value: code / WITNP_OUTPUT_SCALE */"]
    if stream:
        out += [f"#define WITNP_FRAME_SIZE {int(np.prod(frame))}",
                f"#define WITNP_FRAME_OUTPUT_SIZE {int(np.prod(f_out))}"]
    code = "\n".join(fwd.lines + (stp.lines if stp else []))
    out += ["", _runtime(code)]
    out += ["/* ---- the model's tables ---- */"] + em.tables + [""]
    bufs = [f"{b}[{big}]" for b in ("wpos", "wneg", "wacc") if re.search(rf"\b{b}\b", code)]
    bufs += [f"{b}[{n}]" for b, n in (("wxz", I_max), ("wxi", I_max), ("wgru", 5 * H_max)) if re.search(rf"\b{b}\b", code)]
    bufs += [f"{b}[{n}]" for b, n in fwd.buffers + (stp.buffers if stp else [])]
    out += [f"static int64_t {b};" for b in bufs]
    out += [f"static int64_t h_{_ident(n)}[{int(r['hidden_size'])}];" for n, r in grus]
    out += ["", "void witnp_forward(const float *xf, int32_t *y) {"] + [
        "    " + ln for ln in "\n".join(fwd.lines).split("\n")] + ["}"]
    if stream:
        out += ["", "typedef struct {"] + [f"    int64_t h_{_ident(n)}[{int(r['hidden_size'])}];" for n, r in grus] + [
            "} witnp_state;", "",
            "void witnp_state_init(witnp_state *st) {"] + [
            f"    {{ int i; for (i = 0; i < {int(r['hidden_size'])}; i++) st->h_{_ident(n)}[i] = 0; }}" for n, r in grus
        ] + ["}", "", "void witnp_step(const float *xf, witnp_state *st, int32_t *y) {"] + [
            "    " + ln for ln in "\n".join(stp.lines).split("\n")] + ["}"]
    return "\n".join(out) + "\n"


def _runtime(code: str) -> str:
    """The runtime's functions that `code` calls, with the ones they call (a firmware build compiles with
    -Wall -Werror: no unused static function may be left)."""
    with open(RUNTIME) as f:
        text = f.read()
    head, *chunks = text.split("\n\n")  # c_runtime.c: functions (with their comment) between blank lines
    funcs = {}
    for ch in chunks:
        m = re.search(r"static \w+ (w_\w+)\(", ch)
        if m is None:
            raise ValueError(f"c_runtime.c: a block without a function: {ch[:60]!r}")
        funcs[m.group(1)] = ch
    need, todo = set(), [n for n in funcs if re.search(rf"\b{n}\(", code)]
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo += [m for m in funcs if m != n and re.search(rf"\b{m}\(", funcs[n])]
    return "\n\n".join([head] + [ch for n, ch in funcs.items() if n in need])


def write_c_source(path, records, input_shape) -> None:
    """Write `c_source(records, input_shape)` to path (atomically)."""
    write_text(path, c_source(records, input_shape))
