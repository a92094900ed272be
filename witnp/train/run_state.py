"""What a training run keeps between epochs and across a resume: the model's state (parameters, stats and
auto-scale state, deep-copied), generator states as JSON, and the metrics files (metrics.csv / .jsonl).
Below both `loop` and `callbacks`, which use them."""
from __future__ import annotations

import copy
import csv
import io
import json
import os
from typing import Callable, List, Optional

import numpy as np

from ..handoff.atomic import write_text
from ..layers.container import walk

__all__ = ["MetricsLog", "read_metrics"]


def _state(model) -> dict:
    """Parameters, stats and auto-scale state of every leaf (a deep copy)."""
    out = {}
    for name, layer in walk(model):
        obs = getattr(layer, "observer", None)
        out[name] = ({k: v.copy() for k, v in layer.params.items()}, {k: np.array(v) for k, v in layer.stats.items()},
                     copy.deepcopy(obs.state()) if obs is not None else None)
    return out


def _restore(model, state: dict, observer: bool = True) -> None:
    for name, layer in walk(model):
        params, stats, obs = state[name]
        for k, v in params.items():
            layer.params[k][...] = v
        for k, v in stats.items():
            layer.stats[k] = np.array(v)
        if obs is not None and observer:
            layer.observer.load_state(obs)


class MetricsLog:
    """Every epoch's row, in metrics.csv and metrics.jsonl in `folder` (when given), rewritten whole and
    atomically after each epoch: a kill never leaves half a line, and each stage's rows stay beside the
    others'. On construction it keeps the rows already in the folder's metrics.jsonl for which
    keep(row) is true (a fresh stage drops its own old rows; a resumed one also its rows past the checkpoint)."""

    def __init__(self, folder: Optional[str], keep: Callable[[dict], bool] = lambda row: False):
        self.folder = folder
        self.rows: List[dict] = []
        if folder:
            os.makedirs(folder, exist_ok=True)
            self.rows = [r for r in read_metrics(folder) if keep(r)]

    def write(self, row: dict) -> None:
        self.rows.append(row)
        if not self.folder:
            return
        write_text(os.path.join(self.folder, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in self.rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        write_text(os.path.join(self.folder, "metrics.csv"), buf.getvalue())


def read_metrics(folder: str) -> List[dict]:
    """The rows of `folder`/metrics.jsonl ([] when there is none)."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _gen_state(g: np.random.Generator) -> dict:
    return g.bit_generator.state


def _gen_from(state: dict) -> np.random.Generator:
    g = np.random.default_rng()
    g.bit_generator.state = state
    return g
