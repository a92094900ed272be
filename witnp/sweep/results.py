"""A sweep folder's results: one row per point in results.jsonl (everything) and results.csv (flat), both
rewritten atomically after every point, in the grid's order; and the summary that ranks the points.

A row: {"point": name, "keys": {swept key: value text}, "status": "done" | "failed", "error", "seconds",
"run": the point's run folder (relative), "stage": the final stage, "eval": {stage: eval.json row}}. The CSV
has the swept keys, then status, then the final stage's figures for each metric m of the evaluation table:
float_m, quantized_m, noisy_m_mean, noisy_m_std (empty where a column is absent), seconds, run and error.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Dict, List, Optional

from ..handoff.atomic import write_text

__all__ = ["ResultsStore", "flat_figures", "rank_metric", "summary_table"]

JSONL, CSV, SUMMARY = "results.jsonl", "results.csv", "summary.txt"


def flat_figures(row: dict) -> Dict[str, float]:
    """The final stage's figures of a done row, flat: float_m, quantized_m, noisy_m_mean, noisy_m_std."""
    ev = (row.get("eval") or {}).get(row.get("stage"), {})
    out = {}
    for col in ("float", "quantized"):
        for m, v in (ev.get(col) or {}).items():
            out[f"{col}_{m}"] = v
    for m, (mean, std) in (ev.get("noisy") or {}).items():
        out[f"noisy_{m}_mean"], out[f"noisy_{m}_std"] = mean, std
    return out


def rank_metric(row: dict) -> Optional[tuple]:
    """(column, metric, value, higher_is_better) that ranks a done row: the final stage's task metric
    (`witnp.train.tasks.MAIN_METRICS`: accuracy, frame_accuracy, snr_db, else loss) in its noisiest column
    (noisy mean, else quantized, else float)."""
    from ..train.tasks import MAIN_METRICS
    f = flat_figures(row)
    for col in ("noisy_{}_mean", "quantized_{}", "float_{}"):
        for m, higher in MAIN_METRICS:
            k = col.format(m)
            if k in f:
                return col.split("_")[0], m, float(f[k]), higher
    return None


class ResultsStore:
    """The rows of a sweep folder, keyed by point name, kept in the order of `names` (the grid's)."""

    def __init__(self, folder: str, names: List[str], keys: List[str]):
        self.folder, self.names, self.keys = folder, list(names), list(keys)
        self.rows: Dict[str, dict] = {}
        path = os.path.join(folder, JSONL)
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        if r.get("point") in self.names:
                            self.rows[r["point"]] = r

    def done(self, name: str) -> bool:
        return self.rows.get(name, {}).get("status") == "done"

    def put(self, row: dict) -> None:
        """Record a point's row and rewrite both files (atomically: a kill leaves the old or the new file)."""
        self.rows[row["point"]] = row
        ordered = [self.rows[n] for n in self.names if n in self.rows]
        write_text(os.path.join(self.folder, JSONL), "".join(json.dumps(r) + "\n" for r in ordered))
        figures = []
        for r in ordered:
            for k in flat_figures(r):
                if k not in figures:
                    figures.append(k)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["point"] + self.keys + ["status"] + figures + ["seconds", "run", "error"])
        for r in ordered:
            f = flat_figures(r)
            w.writerow([r["point"]] + [r.get("keys", {}).get(k, "") for k in self.keys] + [r.get("status", "")]
                       + [f.get(k, "") for k in figures] + [r.get("seconds", ""), r.get("run", ""),
                                                              r.get("error", "")])
        write_text(os.path.join(self.folder, CSV), buf.getvalue())

    def write_summary(self, seed_key: str = "seed") -> str:
        text = summary_table([self.rows[n] for n in self.names if n in self.rows], self.keys, seed_key)
        write_text(os.path.join(self.folder, SUMMARY), text + "\n")
        return text


def summary_table(rows: List[dict], keys: List[str], seed_key: str = "seed") -> str:
    """The points ranked best first by `rank_metric`, seeds pooled: one line per setting of the other swept
    keys, with the mean ± std over its seeds and how many seeds are done; failed points counted apart."""
    groups: Dict[tuple, list] = {}
    failed = 0
    metric = None
    other = [k for k in keys if k != seed_key]
    for r in rows:
        if r.get("status") != "done":
            failed += 1
            continue
        rm = rank_metric(r)
        if rm is None:
            continue
        metric = metric or rm
        groups.setdefault(tuple(r["keys"].get(k, "") for k in other), []).append(rm[2])
    if metric is None:
        return f"no finished point to rank ({failed} failed)"
    col, m, _, higher = metric
    stats = []
    for g, vals in groups.items():
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        stats.append((g, mean, std, len(vals)))
    stats.sort(key=lambda s: -s[1] if higher else s[1])
    head = ["rank"] + other + [f"{col} {m}", "seeds"]
    lines = [[str(i + 1)] + list(g) + [f"{mean:.4f} ± {std:.4f}", str(n)]
             for i, (g, mean, std, n) in enumerate(stats)]
    widths = [max(len(h), *(len(l[j]) for l in lines)) for j, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines]
    if failed:
        out.append(f"({failed} failed point{'s' * (failed > 1)}: see results.csv)")
    return "\n".join(out)
