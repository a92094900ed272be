"""Accuracy against noise level: one or several quantized models evaluated at each NORMAL noise level, the
noisy levels over several seeds (`witnp.train.noise_eval_rng`, the draws of `witnp train`'s table).

`noise_sweep` returns rows {"model", "level", metric: [mean, std], ...}; `write_csv`, `write_json` and
`write_plot` (matplotlib, the optional extra ``witnp[plot]``) write them, atomically.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Dict, List, Sequence

import numpy as np

from ..handoff.atomic import write_text
from ..train.loop import evaluate, noise_eval_rng, with_config

__all__ = ["parse_levels", "noise_sweep", "format_sweep", "write_csv", "write_json", "write_plot"]


def parse_levels(text: str) -> List[int]:
    """"0-9" (a range, both ends included) or "0,2,4" (a list) -> sorted unique levels, each in 0..9."""
    try:
        if "-" in text.strip("-"):
            a, b = (int(v) for v in text.split("-"))
            levels = list(range(a, b + 1))
        else:
            levels = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--noise-levels {text!r}: expected a range A-B or a list A,B,... of levels 0..9") from None
    if not levels or any(not 0 <= v <= 9 for v in levels):
        raise ValueError(f"--noise-levels {text!r}: expected levels in 0..9 (and A <= B)")
    return sorted(set(levels))


def noise_sweep(models: Dict[str, object], x, y, levels: Sequence[int], seeds: int = 5, lengths=None,
                time_axis: int = 1) -> List[dict]:
    """Each quantized model (name -> model) on (x, y) at each noise level: {"model", "level", "seeds", metric:
    [mean, std]} rows, the metrics of `witnp.train.evaluate` (loss, accuracy for classification)."""
    rows = []
    for name, model in models.items():
        if not any(l.config is not None and l.config.use_quantization for l in _leaves(model)):
            raise ValueError(f"{name}: a float model; noise acts on quantized arrays (evaluate it with --quantize, "
                             f"or a QAT / NAT model)")
        for level in levels:
            m = with_config(model, {"noise_level": int(level)})
            n = seeds if level else 1
            runs = [evaluate(m, x, y, rng=noise_eval_rng(s), lengths=lengths, time_axis=time_axis) for s in range(n)]
            row = {"model": name, "level": int(level), "seeds": n}
            row.update({k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))]
                        for k in runs[0]})
            rows.append(row)
    return rows


def _leaves(model):
    from ..layers.container import walk
    return [l for _, l in walk(model)]


def _metric(rows):
    """The task's main metric (`witnp.train.tasks.main_metric`): accuracy, frame_accuracy, snr_db, else loss."""
    from ..train.tasks import MAIN_METRICS
    return next(m for m, _ in MAIN_METRICS if m in rows[0])


def format_sweep(rows: List[dict]) -> str:
    """One line per model and level: the metric and the loss, mean ± std."""
    metric = _metric(rows)
    width = max(len("model"), *(len(r["model"]) for r in rows))
    lines = [f"{'model':{width}s} level  {metric + ' (mean ± std)':>22s}  {'loss':>17s}"]
    for r in rows:
        m, s = r[metric]
        lines.append(f"{r['model']:{width}s} {r['level']:5d}  {m:13.4f} ± {s:6.4f}  {r['loss'][0]:8.4f} ± "
                     f"{r['loss'][1]:6.4f}")
    return "\n".join(lines)


def write_csv(path, rows: List[dict]) -> None:
    """model, level, seeds, then <metric>_mean, <metric>_std for each metric."""
    metrics = [k for k in rows[0] if k not in ("model", "level", "seeds")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "level", "seeds"] + [f"{k}_{s}" for k in metrics for s in ("mean", "std")])
    for r in rows:
        w.writerow([r["model"], r["level"], r["seeds"]] + [v for k in metrics for v in r[k]])
    write_text(path, buf.getvalue())


def write_json(path, rows: List[dict]) -> None:
    write_text(path, json.dumps(rows, indent=1))


def write_plot(path, rows: List[dict]) -> None:
    """A PNG of the metric against noise level, one line per model, error bars ± std. Needs matplotlib
    (``pip install "witnp[plot]"``)."""
    from .plot import new_figure, save_png
    metric = _metric(rows)
    fig, ax = new_figure()
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        ax.errorbar([r["level"] for r in rs], [r[metric][0] for r in rs], yerr=[r[metric][1] for r in rs],
                    marker="o", capsize=3, label=name)
    ax.set_xlabel("NORMAL noise level")
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)
