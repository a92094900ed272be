"""Where accuracy goes: the same inputs through the float, quantized and noisy model, layer by layer.

For every unit of the model (the leaves of its Sequential chains; a Residual or Branches block counts as one
unit) and every variant (quantized: noise off; noisy: the model's noise level, several seeds):

    cosine     <q, f> / (|q|·|f|) of the unit's output q against the float model's output f (1 when both 0)
    snr_db     10·log10(Σ f² / Σ (q - f)²): the error accumulated up to this unit (inf when exact)
    own_snr_db the same for this unit alone, fed the float model's input to it: what this unit loses
    max_abs, mean_abs   of q - f
    sat_in, sat_out     array layers: the share of input values clipped at the input code range (a zero is
                        not clipped) and of outputs clipped at the output range (`Layer.clip_masks`)

The noisy figures are (mean, std) over the seeds (`witnp.train.noise_eval_rng`). `compare` ranks the units
by own_snr_db (worst first) and `advice` names what is likely to help.
"""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np

from ..layers.container import Model, units
from ..train.loop import noise_eval_rng, with_config

__all__ = ["units", "compare", "advice", "format_report"]


def _metrics(q, f) -> dict:
    q, f = np.asarray(q, np.float64).ravel(), np.asarray(f, np.float64).ravel()
    e = q - f
    nf, nq, ne = float(f @ f), float(q @ q), float(e @ e)
    cos = 1.0 if nf == 0 and nq == 0 else (float(q @ f) / math.sqrt(nf * nq) if nf > 0 and nq > 0 else 0.0)
    snr = math.inf if ne == 0 else (10 * math.log10(nf / ne) if nf > 0 else -math.inf)
    return {"cosine": cos, "snr_db": snr, "max_abs": float(np.abs(e).max(initial=0.0)),
            "mean_abs": float(np.abs(e).mean()) if e.size else 0.0}


def _outputs(us, x, rng):
    """Each unit's input and output of one forward (inference) through the units in order."""
    ins, outs, ctxs = [], [], []
    for _, layer in us:
        ins.append(x)
        x, c = layer.forward(x, train=False, rng=rng)
        outs.append(x)
        ctxs.append(c)
    return ins, outs, ctxs


def _saturation(layer, x, ctx):
    masks = layer.clip_masks(ctx) if hasattr(layer, "clip_masks") else None
    if masks is None:
        return None, None
    xm, xv = np.asarray(masks[0]).reshape(-1), np.asarray(x).reshape(-1)
    clipped = (xm == 0) & (xv != 0) if xm.size == xv.size else (xm == 0)  # unfolded patches: the mask alone
    return float(clipped.mean()), float((np.asarray(masks[1]) == 0).mean())


def compare(model, x, noise_level: Optional[int] = None, noise_seeds: int = 3) -> List[dict]:
    """Per-unit comparison of a quantized model on inputs x (N, ...) float32 (see the module docstring).

    noise_level: the noisy variant's level (default: the highest level among the model's layers, else 4);
    0 leaves the noisy figures out. Returns one record per unit, in model order:
    {"name", "type", "quantized": {...metrics, "own_snr_db", "sat_in", "sat_out"}, "noisy": {metric: [mean,
    std]} or None, "rank"} (rank 1 = the lowest own_snr_db)."""
    if not any(l.config is not None and l.config.use_quantization for _, l in _leaves(model)):
        raise ValueError("compare: the model has no quantized layer; compare a QAT or NAT model (float models "
                         "have nothing to compare)")
    if isinstance(noise_seeds, bool) or not isinstance(noise_seeds, int) or noise_seeds < 1:
        raise ValueError(f"compare: noise_seeds={noise_seeds!r}; expected a positive integer")
    level = noise_level if noise_level is not None else max(
        [l.config.noise_level for _, l in _leaves(model) if l.config is not None] + [0]) or 4
    x = np.asarray(x, np.float32)
    fl = units(with_config(model, {"use_quantization": False, "noise_level": 0}))
    qm = units(with_config(model, {"noise_level": 0}))
    f_in, f_out, _ = _outputs(fl, x, None)
    q_in, q_out, q_ctx = _outputs(qm, x, None)
    noisy = []
    if level:
        nm = units(with_config(model, {"noise_level": level}))
        noisy = [_outputs(nm, x, noise_eval_rng(s))[1] for s in range(noise_seeds)]
    report = []
    for i, (name, layer) in enumerate(qm):
        rec = dict(_metrics(q_out[i], f_out[i]))
        own, _ = layer.forward(f_in[i], train=False)
        rec["own_snr_db"] = _metrics(own, f_out[i])["snr_db"]
        rec["sat_in"], rec["sat_out"] = _saturation(layer, q_in[i], q_ctx[i])
        rec["neg_in"] = float((np.asarray(q_in[i]) < 0).mean()) if not isinstance(q_in[i], tuple) else None
        nz = None
        if noisy:
            per = [_metrics(run[i], f_out[i]) for run in noisy]
            nz = {k: [float(np.mean([p[k] for p in per])), float(np.std([p[k] for p in per]))] for k in per[0]}
        report.append({"name": name, "type": type(layer).__name__, "quantized": rec, "noisy": nz,
                       "config": _config_summary(layer)})
    order = sorted(range(len(report)), key=lambda j: report[j]["quantized"]["own_snr_db"])
    for r, j in enumerate(order, 1):
        report[j]["rank"] = r
    for rec in report:
        rec["advice"] = advice(rec)
    return report


def _leaves(model):
    if isinstance(model, Model):
        for child in model.children.values():
            yield from _leaves(child)
    else:
        yield "", model


def _config_summary(layer) -> Optional[dict]:
    c = layer.config
    if c is None or not c.use_quantization:
        return None
    return {"handle_neg_in": c.handle_neg_in, "x_quant_bits": c.x_quant_bits, "y_quant_bits": c.y_quant_bits,
            "noise_level": c.noise_level}


def advice(rec: dict) -> List[str]:
    """What is likely to help a unit, from its record (rules of thumb, each naming the figure behind it)."""
    q, cfg, out = rec["quantized"], rec.get("config") or {}, []
    if q["sat_out"] is not None and q["sat_out"] > 0.01:
        out.append(f"{q['sat_out']:.1%} of its outputs clip: more output bits (y_quant_bits > "
                   f"{cfg.get('y_quant_bits', 8)}) or a calibration that keeps the range (io_max_y)")
    if q["sat_in"] is not None and q["sat_in"] > 0.05:
        out.append(f"{q['sat_in']:.1%} of its inputs clip: a calibration strategy for io_max_x (percentile, "
                   f"mse) or a smaller scale_x")
    if cfg.get("handle_neg_in") == "FALSE" and (rec["quantized"].get("neg_in") or 0) > 0.01:
        out.append(f"{q['neg_in']:.1%} of its inputs are negative and FALSE cuts them to 0: handle_neg_in = PN")
    if q["own_snr_db"] < 20 and cfg.get("y_quant_bits", 12) < 10:
        out.append(f"own SNR {q['own_snr_db']:.1f} dB at {cfg.get('y_quant_bits')} output bits: y_quant_bits = 10")
    return out


def format_report(report: List[dict], worst: int = 3) -> str:
    """The report as a table (one row per unit) and the worst units with their advice."""
    def f(v, spec="7.2f"):
        return "   -   " if v is None else ("    inf" if v == math.inf else format(v, spec))
    head = (f"{'unit':>8s} {'type':14s} | {'cosine':>7s} {'SNR dB':>7s} {'own dB':>7s} {'max err':>8s} "
            f"{'sat in':>7s} {'sat out':>7s} | {'noisy cos':>9s} {'noisy dB':>14s} | rank")
    lines = [head, "-" * len(head)]
    for r in report:
        q, n = r["quantized"], r["noisy"]
        ncos = f"{n['cosine'][0]:9.4f}" if n else f"{'-':>9s}"
        ndb = (f"{n['snr_db'][0]:7.2f} ± {n['snr_db'][1]:4.2f}" if n and n["snr_db"][0] != math.inf
               else f"{'-':>14s}")
        sat = lambda v: f"{v:7.2%}" if v is not None else f"{'-':>7s}"  # noqa: E731
        lines.append(f"{r['name']:>8s} {r['type']:14s} | {q['cosine']:7.4f} {f(q['snr_db'])} {f(q['own_snr_db'])} "
                     f"{q['max_abs']:8.4f} {sat(q['sat_in'])} {sat(q['sat_out'])} | {ncos} {ndb} | {r['rank']}")
    lines.append("")
    lines.append("where accuracy goes (lowest own SNR first):")
    for r in sorted(report, key=lambda r: r["rank"])[:worst]:
        tips = "; ".join(r["advice"]) or "no clipping or cut range seen: its error is rounding (more bits help)"
        lines.append(f"  {r['rank']}. {r['name']} ({r['type']}): own SNR {f(r['quantized']['own_snr_db']).strip()} "
                     f"dB. {tips}")
    return "\n".join(lines)
