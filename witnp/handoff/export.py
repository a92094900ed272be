"""The firmware handoff: integer weights, NPU bias, shifts, G, LUTs and golden vectors (docs/firmware-export.md).

`export_model(model)` turns a quantized (QAT) model into layer records computed with the same kernels as
training, so the integer engine (`engine`) reproduces the model bit for bit; `handoff_file.write_handoff` stores
them in HDF5 readable with plain h5py; `write_c_header` and `write_gains_json` emit the same numbers for a
firmware build. Scales are the deployment scales: derived from io_max (auto-scale) or the user's.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import numpy as np

from ..array import matrix as cim
from .handoff_file import leaf_records, read_handoff, write_handoff  # noqa: F401  (re-exported)
from ..array.conv.ops import wmat_conv
from ..layers.container import Sequential
from ..quant import code_range, gain, pow2_exponent, shift_offset
from .atomic import write_text
from .engine import IntegerEngine

__all__ = ["export_model", "leaf_records", "write_handoff", "read_handoff", "write_c_header", "write_gains_json", "golden_vectors",
           "SUPPORTED", "MAX_COLUMNS", "MAX_NPU_BIAS", "preflight", "unsigned_input_findings"]

MAX_COLUMNS = 896
"""Output columns of one WTM2101 array; a wider layer must be split by the mapper."""
MAX_NPU_BIAS = 16 * 128 * 255
"""The largest |NPU bias| the mapper takes (16 bias rows of 128·255)."""
SUPPORTED = ("Linear", "Conv2d", "ConvTranspose2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Reshape", "Dropout",
             "Sigmoid", "Tanh", "GELU", "PReLU", "Sqrt", "BatchNorm1d", "BatchNorm2d", "Mean", "Add", "Mul", "Divide",
             "Cat", "GRU", "Sequential", "Residual", "Branches")
QUANTIZED = ("Linear", "Conv2d", "ConvTranspose2d", "AvgPool2d", "Sigmoid", "Tanh", "GELU", "PReLU", "Sqrt", "BatchNorm1d",
             "BatchNorm2d", "Mean", "Add", "Mul", "Divide", "Cat", "GRU")  # must be quantized to run on integers
f32 = np.float32


def _array_record(name, layer, warn) -> dict:
    cfg = layer.config
    t = type(layer).__name__
    conv1d = t == "Conv1d"  # the Conv2d it stands for, on (B, C, T) activations (record flag conv1d)
    t = "Conv2d" if conv1d else t
    sc = layer.observer.scales_for_forward(False, layer._qs())  # the deployment scales (as inference uses)
    sx, sw, sy = sc["x"], sc["weight"], sc["y"]
    for what, v in (("scale_x", sx), ("scale_weight", sw), ("scale_y", sy)):
        if pow2_exponent(v) is None:
            warn(f"{name}: {what}={v} is not a power of two; the chip needs power-of-two scales")
    W = layer.params["weight"]
    b = layer.params.get("bias")
    s = shift_offset(cfg.shift_num, sx, cfg.x_quant_bits) if cfg.handle_neg_in == "Shift" else 0.0
    P = f32(sx * sw)
    to_linear = t == "Conv2d" and cfg.to_linear
    split = cfg.x_quant_bits > 8 and (t == "Linear" or to_linear)
    w2 = wmat_conv(W, jfirst=True) if to_linear else W.reshape(W.shape[0], -1)
    wq, wmask = cim.weight_codes(name, np.ascontiguousarray(w2), cfg, sw)  # the training forward's own codes
    co = layer.out_features if t == "Linear" else layer.out_channels
    if t == "ConvTranspose2d":
        ba, bmask, bd = cim.bias_codes(b, np.empty((co, 0), f32), cfg, P, 0.0, False, co)
    else:
        ba, bmask, bd = cim.bias_codes(b, wq, cfg, P, s, split, co)
    rec = {"type": t, "x_quant_bits": cfg.x_quant_bits, "y_quant_bits": cfg.y_quant_bits,
           "handle_neg_in": cfg.handle_neg_in, "bias_row_N": cfg.bias_row_N, "scale_x": sx, "scale_weight": sw,
           "scale_y": sy, "shift": s, "to_linear": bool(to_linear), "config": json.dumps(cfg.to_dict()),
           "rounding": cfg.rounding,
           "conv1d": bool(conv1d),
           "bias_npu": (128 * ba.astype(np.int64)).astype(np.int32),
           "bias_d": (128 * bd.astype(np.int64)).astype(np.int32) if bd is not None else np.zeros(co, np.int32)}
    G = gain(sx, sw, sy)
    rec["G"] = G
    for k in ("io_max_x", "io_max_weight", "io_max_y"):
        rec[k] = float(layer.stats[k])
    if to_linear:  # the torch layout, recovered from the (kw, kh, ci) order
        wq_t = wq.reshape(W.shape[0], W.shape[3], W.shape[2], W.shape[1]).transpose(0, 3, 2, 1)
    else:
        wq_t = wq.reshape(W.shape)
    rec["weight"] = wq_t.astype(np.int8)
    if t != "Linear":
        g = layer.geo
        rec["geometry"] = np.array([g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.oph, g.opw, g.groups], np.int32)
        rec["out_channels"] = co
        if cfg.handle_neg_in == "PN" and not to_linear:
            wneg, _ = cim.weight_codes(name, np.ascontiguousarray(-w2), cfg, sw)
            rec["weight_neg"] = wneg.reshape(W.shape).astype(np.int8)
    # the array's own layout: rows = inputs (2·in for PN: [Wqᵀ; -Wqᵀ]), columns = outputs
    arr = wq.T if t != "ConvTranspose2d" else wq
    if cfg.handle_neg_in == "PN" and (t == "Linear" or to_linear):
        arr = np.concatenate([arr, -arr])
    rec["array_weight"] = np.ascontiguousarray(arr).astype(np.int8)
    # what the chip's mapper enforces
    sat = int(W.size - wmask.sum())
    if sat:
        warn(f"{name}: {sat} of {W.size} weights lie outside the int8 range at scale_weight={sw} and are clipped")
    big = int((np.abs(rec["bias_npu"].astype(np.int64)) > MAX_NPU_BIAS).sum())
    if big:
        warn(f"{name}: {big} NPU bias value(s) reach |{int(np.abs(rec['bias_npu'].astype(np.int64)).max())}|, past "
             f"the mapper's ±{MAX_NPU_BIAS} (16·128·255)")
    nclip = int((~bmask.astype(bool)).sum())
    if nclip:
        warn(f"{name}: {nclip} bias value(s) exceed ±128·bias_row_N (N={cfg.bias_row_N}) and are clipped")
    cols = arr.shape[1]
    if cols > MAX_COLUMNS:
        warn(f"{name}: {cols} output columns exceed the array's {MAX_COLUMNS}; the mapper must split this layer")
    if (split or cfg.noise_level) and G == 0:
        warn(f"{name}: G = R(sx·sw/sy) is 0")
    return rec


def _lut_record(name, layer, warn) -> dict:
    """A single-input digital op as a table over its input codes (per channel for PReLU and BatchNorm): exact by
    construction, since the training forward is evaluated on every code."""
    cfg = layer.config
    sc = layer.observer.scales_for_forward(False, layer._qs())
    xb = cfg.x_quant_bits
    signed = layer.signed_in
    lo, hi = code_range(xb, signed)
    q = np.arange(lo, hi + 1, dtype=np.float32)
    t = type(layer).__name__
    per_channel = t.startswith("BatchNorm") or (t == "PReLU" and layer.params["weight"].size > 1)
    x = q / f32(sc["x"])
    if per_channel:
        C = layer.num_features if t.startswith("BatchNorm") else layer.params["weight"].size
        shape = (1, C, x.size, 1) if t == "BatchNorm2d" else (1, C, x.size)
        y, _ = layer.forward(np.broadcast_to(x.reshape((1, 1, -1) + (1,) * (len(shape) - 3)), shape).copy(),
                             train=False)
        lut = np.rint(y.reshape(C, -1) * f32(sc["y"])).astype(np.int32)
    else:
        y, _ = layer.forward(x, train=False)  # the training forward's own arithmetic, code by code
        lut = np.rint(y * f32(sc["y"])).astype(np.int32)
    return {"type": "LUT", "op": t, "x_quant_bits": xb, "scale_x": sc["x"], "scale_y": sc["y"],
            "signed_in": bool(signed), "per_channel": bool(per_channel), "lut": lut}


def _digital_record(name, layer) -> dict:
    """Mean and the two-input ops: integer formulas on codes (docs/firmware-export.md)."""
    cfg = layer.config
    sc = layer.observer.scales_for_forward(False, layer._qs())
    t = type(layer).__name__
    rec = {"type": t, "x_quant_bits": cfg.x_quant_bits, "y_quant_bits": cfg.y_quant_bits,
           **{"scale_" + k: v for k, v in sc.items()}}
    if t == "Mean":
        rec.update(dims=json.dumps(layer.dim), keepdim=bool(layer.keepdim))
    if t == "Cat":
        rec["dim"] = layer.dim
    if t == "Divide":  # a two-input table over both input codes
        xb = cfg.x_quant_bits
        q = np.arange(code_range(xb)[0], code_range(xb)[1] + 1, dtype=np.float32)
        a, b = np.meshgrid(q / f32(sc["x1"]), q / f32(sc["x2"]), indexing="ij")
        y, _ = layer.forward((a.copy(), b.copy()), train=False)
        rec["lut2"] = np.rint(y * f32(sc["y"])).astype(np.int32)
    return rec


def _node(name, layer, warn):
    t = type(layer).__name__
    base = next((c.__name__ for c in type(layer).__mro__ if c.__name__ in SUPPORTED), None)
    if base is None:
        raise ValueError(f"export: layer {name!r} ({t}) is not supported by the integer engine; supported: "
                         f"{', '.join(SUPPORTED)}")
    if base in ("Sequential", "Residual", "Branches"):
        return {"type": base, "children": [(f"{name}.{k}" if name else k, _node(f"{name}.{k}" if name else k, c, warn))
                                           for k, c in layer.children.items()]}
    if base in QUANTIZED and not layer.config.use_quantization:
        raise ValueError(f"export: layer {name!r} ({t}) is in float mode (use_quantization=False); the firmware "
                         f"needs a quantized (QAT) model")
    if base in ("Linear", "Conv2d", "ConvTranspose2d"):
        rec = _array_record(name, layer, warn)
        rec["type"] = base
        return rec
    if base in ("Sigmoid", "Tanh", "GELU", "PReLU", "Sqrt", "BatchNorm1d", "BatchNorm2d"):
        return _lut_record(name, layer, warn)
    if base in ("Mean", "Add", "Mul", "Divide", "Cat"):
        return _digital_record(name, layer)
    if base == "GRU":
        ex = layer.export_arrays()
        rec = {"type": "GRU", "handle_neg_in": layer.config.handle_neg_in, "x_quant_bits": 8,
               "y_quant_bits": layer.config.y_quant_bits, "scale_ones": ex["scale_ones"],
               "hidden_size": layer.hidden_size, "input_size": layer.input_size,
               "return_sequences": bool(getattr(layer, "return_sequences", True)),
               "shift_bits": np.array(ex["shift_bits"], np.int32), "lut_sigmoid": ex["lut_sigmoid"],
               "lut_tanh": ex["lut_tanh"], "config": json.dumps(layer.config.to_dict()),
               "rounding": layer.config.rounding}
        for a in ("zr", "in", "hn"):
            for k, v in ex[a].items():
                if v is not None:
                    rec[f"{a}_{k}"] = v
        return rec
    if base == "MaxPool2d":
        return {"type": base, "kernel_size": layer.k, "stride": layer.s, "padding": layer.p}
    if base == "AvgPool2d":  # a window sum and a shift on codes, at the input scale (docs/firmware-export.md)
        sc = layer.observer.scales_for_forward(False, layer._qs())
        return {"type": base, "kernel_size": layer.k, "stride": layer.s, "padding": layer.p,
                "x_quant_bits": layer.config.x_quant_bits, "y_quant_bits": layer.config.y_quant_bits,
                "scale_x": sc["x"]}
    if base == "Flatten":
        return {"type": base, "start_dim": layer.start_dim, "end_dim": layer.end_dim}
    if base == "Reshape":
        return {"type": base, "sample_shape": np.array(layer.shape, np.int64)}
    return {"type": base}


def export_model(model, warn=None) -> List[Tuple[str, dict]]:
    """Layer records [(name, record)] of a quantized model: the top-level layers of a Sequential (containers as
    records with "children"), or [("0", record)] for a single layer.

    Raises ValueError naming the layer for unsupported types or float-mode layers. `warn(msg)` receives the
    mapper warnings (default: collected into the first record's "warnings").
    """
    warnings: List[str] = []
    warn = warn or warnings.append
    if isinstance(model, Sequential):
        out = [(k, _node(k, c, warn)) for k, c in model.children.items()]
    else:
        out = [("0", _node("0", model, warn))]
    if out:
        out[0][1]["warnings"] = warnings
    return out


def golden_vectors(model, records, x, run=None) -> Dict[str, np.ndarray]:
    """Input frames x, the model's float outputs, and from the engine every layer's integer output codes
    ("codes/<layer>"), input codes ("inputs/<layer>": `IntegerEngine._trace_inputs`; a GRU's in-array codes
    under "inputs_in/<layer>") and, per GRU, the Q7 state after every step ("states/<layer>", (N, T, H)).
    run: the engine's traced run on x when the caller has it (`IntegerEngine.run(x, trace=True)`)."""
    y_eng, codes, tr = run if run is not None else IntegerEngine(records).run(x, trace=True)
    y_model = model.forward(np.asarray(x, np.float32), train=False)[0]
    return {"input": np.asarray(x, np.float32), "output": y_model, "engine_output": y_eng,
            **{"codes/" + k: v.astype(np.int32) for k, v in codes.items()},
            **{"inputs/" + k: v.astype(np.int32) for k, v in tr["inputs"].items()},
            **{"inputs_in/" + k: v.astype(np.int32) for k, v in tr["inputs_in"].items()},
            **{"states/" + k: v.astype(np.int8) for k, v in tr["states"].items()}}


def write_mapper_pair(folder, records, x, run=None) -> dict:
    """The chip mapper's calibration pair for frames x (N, ...): expected_in.bin, the first layer's input codes,
    and expected_out.bin, the last layer's output codes, each little-endian int16 ('<i2'), row-major (N,
    features); expected.json says shapes, dtype and scales. Written atomically; returns that description.
    run: as for `golden_vectors`."""
    from .atomic import write_bytes
    _, codes, tr = run if run is not None else IntegerEngine(records).run(x, trace=True)
    leaves = list(leaf_records(records))
    first = next((n for n, _ in leaves if n in tr["inputs"]), None)
    if first is None:
        raise ValueError("mapper pair: no layer quantizes the input")
    last = leaves[-1][0]
    xin, yout = tr["inputs"][first], codes[last]
    for what, a in (("input", xin), ("output", yout)):
        if a.min(initial=0) < -32768 or a.max(initial=0) > 32767:
            raise ValueError(f"mapper pair: {what} codes reach {a.min()}..{a.max()}, past int16")
    rec0 = dict(leaves)[first]
    desc = {"dtype": "<i2", "n": int(len(x)), "in_layer": first, "in_shape": list(xin.shape[1:]),
            "in_scale": float(rec0.get("scale_x", rec0.get("zr_scale_x", 0.0))), "out_layer": last,
            "out_shape": list(yout.shape[1:]), "out_scale": tr["out_scale"]}
    write_bytes(os.path.join(folder, "expected_in.bin"), xin.astype("<i2").tobytes())
    write_bytes(os.path.join(folder, "expected_out.bin"), yout.astype("<i2").tobytes())
    write_text(os.path.join(folder, "expected.json"), json.dumps(desc, indent=1))
    return desc


def _c_ident(name: str) -> str:
    return "layer_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def _c_type(a: np.ndarray) -> str:
    """The smallest C integer type holding every value of an integer array (float arrays: float)."""
    if a.dtype.kind == "f":
        return "float"
    if a.dtype.kind == "b":
        return "uint8_t"
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for t, (tlo, thi) in (("int8_t", (-128, 127)), ("int16_t", (-32768, 32767)), ("int32_t", (-2 ** 31, 2 ** 31 - 1))):
        if tlo <= lo and hi <= thi:
            return t
    return "int64_t"


def _c_values(a: np.ndarray) -> str:
    if a.ndim <= 1:
        vals = a.ravel()
        fmt = (lambda v: f"{float(v)!r}f") if a.dtype.kind == "f" else (lambda v: str(int(v)))
        return "{" + ", ".join(fmt(v) for v in vals) + "}"
    return "{\n  " + ",\n  ".join(_c_values(r) for r in a) + "\n}"


def write_c_header(path, records) -> None:
    """A C99 header a firmware build includes as it is: for every exported layer (array layers, the GRU's three
    arrays, digital ops, pooling and shapes), every integer array of its record (`export_model`) as a
    `static const` array of the smallest integer type that holds it (int8_t weights, int32_t NPU biases,
    LUTs, geometry), every number as a `#define` (scales with their shifts, G, bit widths, sizes), its type
    and handle_neg_in as string macros, and compile-time guards (C99 negative-size arrays) that each array
    has the size the record says. Identifiers: layer_<name>_<key> (arrays) and LAYER_<NAME>_<KEY> (macros).
    `array_weight` (rows = inputs, columns = outputs, PN's [Wqᵀ; -Wqᵀ]) is emitted as <ident>_weight, the
    torch-layout codes `weight` as <ident>_weight_torch, and <ident>_bias names bias_npu."""
    leaves = list(leaf_records(records))
    lines = ["/* Generated by witnp export: the integer model for the firmware build. Do not edit.",
             f"   {len(leaves)} layers, in order: " + ", ".join(n for n, _ in leaves) + " */",
             "#ifndef WITNP_MODEL_H", "#define WITNP_MODEL_H", "#include <stdint.h>", "",
             f"#define WITNP_N_LAYERS {len(leaves)}", ""]
    for name, rec in leaves:
        ident = _c_ident(name)
        up = ident.upper()
        lines.append(f"/* {name}: {rec.get('op', rec['type'])} */")
        lines.append(f'#define {up}_TYPE "{rec["type"]}"')
        for k, v in rec.items():
            if k in ("type", "config", "warnings", "children"):
                continue
            key = k.upper()
            if isinstance(v, np.ndarray):
                a = v if v.dtype.kind in "fiub" else None
                if a is None:
                    raise ValueError(f"C header: layer {name!r} field {k!r} has dtype {v.dtype}, which C cannot hold")
                cname = {"array_weight": "weight", "weight": "weight_torch"}.get(k, k)  # weight: the array layout
                dims = "".join(f"[{d}]" for d in a.shape) or "[1]"
                body = _c_values(a.reshape(1) if a.ndim == 0 else a)
                lines.append(f"static const {_c_type(a)} {ident}_{cname}{dims} = {body};")
                lines.append(f"typedef char {ident}_{cname}_size_check[(sizeof({ident}_{cname}) == "
                             f"{max(a.size, 1)} * sizeof({ident}_{cname}{'[0]' * max(a.ndim, 1)})) ? 1 : -1];")
                if k == "bias_npu":
                    lines.append(f"#define {ident}_bias {ident}_bias_npu")
                if k == "array_weight":
                    lines.append(f"#define {up}_ROWS {a.shape[0]}")
                    lines.append(f"#define {up}_COLS {a.shape[1]}")
            elif isinstance(v, (bool, np.bool_)):
                lines.append(f"#define {up}_{key} ({int(v)})")
            elif isinstance(v, (int, np.integer)):
                lines.append(f"#define {up}_{key} ({int(v)})")
            elif isinstance(v, (float, np.floating)):
                lines.append(f"#define {up}_{key} ({float(v)!r})")
                sh = pow2_exponent(v) if k.startswith("scale") and v else None
                if sh is not None:
                    lines.append(f"#define {up}_SHIFT_{key.replace('SCALE_', '')} ({sh})")
            elif isinstance(v, str):
                lines.append(f'#define {up}_{key} "{v}"')
            elif isinstance(v, (tuple, list)):
                lines.append(f"#define {up}_{key} {{" + ", ".join(str(int(e)) for e in v) + "}")
            else:
                raise ValueError(f"C header: layer {name!r} field {k!r} ({type(v).__name__}) has no C form")
        if "G" in rec and rec.get("G") and pow2_exponent(rec["G"]) is not None:
            lines.append(f"#define {up}_SHIFT_G ({pow2_exponent(rec['G'])})")
        lines.append("")
    lines += ["#endif /* WITNP_MODEL_H */", ""]
    write_text(path, "\n".join(lines))


def write_gains_json(path, records) -> None:
    """The same set as the C header, as JSON: {layer name: its record} for every exported layer, in order:
    every number (scales, G, bit widths, sizes, io_max), every array as nested lists (int8 weights, NPU
    biases, LUTs, the GRU's arrays, geometry), shift_x / shift_weight / shift_y / shift_G beside the scales
    that are powers of two, and the layer config as an object."""
    out = {}
    for name, rec in leaf_records(records):
        d = {}
        for k, v in rec.items():
            if k == "warnings":
                continue
            if k == "config":
                d[k] = json.loads(v)
            elif isinstance(v, np.ndarray):
                d[k] = v.tolist()
            elif isinstance(v, np.generic):
                d[k] = v.item()
            elif isinstance(v, tuple):
                d[k] = list(v)
            else:
                d[k] = v
        for k in ("scale_x", "scale_weight", "scale_y", "G"):
            if k in rec:
                d["shift_" + k.replace("scale_", "")] = pow2_exponent(rec[k]) if rec[k] else None
        out[name] = d
    write_text(path, json.dumps(out, indent=1))


def preflight(model, x=None) -> List[str]:
    """What the chip's mapper would refuse or change in a quantized model, one line per finding, each naming the
    layer, the value and the limit: weight codes saturating int8, bias codes clipped at ±128·bias_row_N, NPU
    bias past ±16·128·255, more than 896 output columns (a split), scales that are not powers of two, G = 0
    where it divides; and, given inputs x (N, ...) float32, negative inputs reaching an array layer with
    handle_neg_in FALSE that codes its input unsigned (they become 0: PN or Shift keep them). Runs the export
    without writing anything."""
    found: List[str] = []
    export_model(model, warn=found.append)
    return found + unsigned_input_findings(model, x) if x is not None else found


def unsigned_input_findings(model, x) -> List[str]:
    """`preflight`'s data check alone: negative inputs x reaching an unsigned FALSE array layer."""
    found: List[str] = []
    if isinstance(model, Sequential):
        h = np.asarray(x, np.float32)
        for name, layer in model.children.items():
            cfg = layer.config
            unsigned = (cfg is not None and cfg.use_quantization and cfg.handle_neg_in == "FALSE"
                        and (type(layer).__name__ in ("Linear", "ConvTranspose2d")
                             or (type(layer).__name__ == "Conv2d" and cfg.to_linear)))
            if unsigned and not isinstance(h, tuple) and (h < 0).any():
                found.append(f"{name}: {float((h < 0).mean()):.1%} of its inputs are negative and handle_neg_in "
                             f"FALSE codes them as 0; use PN or Shift")
            h = layer.forward(h, train=False)[0]
    return found
