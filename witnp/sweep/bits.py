"""Bit-width search: per array layer, the smallest input and output bit widths (8..12) whose quantized metric
stays within a budget of a reference, evaluated on the validation split after calibration (and, optionally,
a short QAT fine-tune), the candidates run on the sweep's executors.

The search (`search`):
1. The reference: the model with every array layer at its widest: 12 input and 12 output bits (or the float
   model). A PN or to_linear Conv2d outputs int8 whatever y_quant_bits says (chip.md §4): its output width
   stays 8; a GRU takes 8-bit inputs and 8..10-bit gate outputs (docs/gru.md).
2. Sensitivity, all candidates at once: for each layer and each of x, y, that one width at each narrower
   choice with every other at its widest. A layer's width is the smallest that passes (metric >= reference - budget) with every wider
   one passing too.
3. Together: those widths at once. While that misses the budget, each still-narrowed width is tried one bit
   wider (all at once) and the change with the most metric per unit of cost is kept.
All-8 is evaluated too, for the table.

The cost (`layer_cost`), per frame: the digital multiply-adds of the bit split (xb > 8 on a Linear or a
to_linear Conv2d: the high input bits are multiplied digitally, as many products as the array's), plus every
output code's bits (yb per output value: what the next stage stores and moves). Other layers take wider
inputs without a split (chip.md §4), so x bits cost them nothing here.

Array layers are those of the model's Sequential chains (Linear, Conv1d/2d, ConvTranspose2d, GRU); digital
ops keep their widths.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["BITS", "array_layers", "layer_cost", "total_cost", "widest", "evaluate_candidate", "search",
           "overrides_toml"]

BITS = (8, 9, 10, 11, 12)
Bits = Dict[str, Tuple[int, int]]  # layer name -> (x_quant_bits, y_quant_bits)


def array_layers(model) -> List[str]:
    """Names of the array layers of `model`'s Sequential chains (the layers a search sets): Linear, Conv1d/2d,
    ConvTranspose2d and GRU."""
    from ..layers.container import units
    from ..layers.conv import Conv2d, ConvTranspose2d
    from ..layers.gru import GRU
    from ..layers.linear import Linear
    return [n for n, layer in units(model) if isinstance(layer, (Linear, Conv2d, ConvTranspose2d, GRU))]


def layer_cost(model, frame: np.ndarray) -> Dict[str, dict]:
    """Per array layer: {"macs": the array's multiply-adds per frame, "split": whether xb > 8 splits the
    input (Linear, to_linear Conv2d), "outputs": output values per frame, "x_bits" and "y_bits": the widths
    it can take}, from one float forward of `frame` (1, ...) float32 in the layers' quantized config.

    A PN or to_linear Conv2d outputs int8 whatever y_quant_bits says (chip.md §4): y_bits (8,). A quantized
    GRU takes 8-bit inputs and 8..10-bit gate outputs (its LUTs have 256 to 1024 entries, docs/gru.md)."""
    from ..layers.container import units
    from ..layers.conv import Conv2d, ConvTranspose2d
    from ..layers.gru import GRU
    from ..layers.linear import Linear
    from ..train.loop import with_config
    fm = with_config(model, {"use_quantization": False, "noise_level": 0})
    cfgs = dict(units(model))
    h, out = np.asarray(frame, np.float32), {}
    for name, layer in units(fm):
        y = layer.forward(h, train=False)[0]
        cfg = cfgs[name].config
        xs, ys = BITS, BITS
        if isinstance(layer, GRU):
            w_ih, w_hh = layer.params["weight_ih"], layer.params["weight_hh"]
            steps = h.shape[1]
            macs, split, xs, ys = steps * (w_ih.size + w_hh.size), False, (8,), (8, 9, 10)
        elif isinstance(layer, (Linear, Conv2d, ConvTranspose2d)):
            w = layer.params["weight"]
            if isinstance(layer, Linear):
                macs = int(np.prod(h.shape[1:]) * w.shape[0])
            elif isinstance(layer, ConvTranspose2d):
                macs = int(w.size * np.prod(h.shape[2:]))
            else:
                macs = int(w.size * np.prod(y.shape[2:]))
            is_conv2d = isinstance(layer, Conv2d) and not isinstance(layer, ConvTranspose2d)
            split = isinstance(layer, Linear) or (is_conv2d and cfg.to_linear)
            macs *= 2 if cfg.handle_neg_in == "PN" and split else 1  # PN doubles the rows ([x+, x-])
            if is_conv2d and (cfg.handle_neg_in == "PN" or cfg.to_linear):
                ys = (8,)
        else:
            h = y
            continue
        out[name] = {"macs": int(macs), "split": bool(split), "outputs": int(np.prod(y.shape[1:])),
                     "x_bits": tuple(xs), "y_bits": tuple(ys)}
        h = y
    return out


def total_cost(costs: Dict[str, dict], bits: Bits) -> dict:
    """{"digital_macs", "output_bits", "cost"} per frame of a choice of widths (cost = their sum)."""
    dm = sum(c["macs"] for n, c in costs.items() if c["split"] and bits[n][0] > 8)
    ob = sum(c["outputs"] * bits[n][1] for n, c in costs.items())
    return {"digital_macs": int(dm), "output_bits": int(ob), "cost": int(dm + ob)}


def evaluate_candidate(task: dict, shared: dict) -> dict:
    """One candidate in a worker: the float model shared["model"] quantized with task["quant"] and the widths
    task["bits"] ({name: [xb, yb]}) on top of task["per_layer"], calibrated on the training split
    (task["calibration"], task["layer_calibration"]), fine-tuned task["finetune_epochs"] epochs at
    task["lr"] when > 0, then measured on the validation split (and the test split when task["test"])."""
    from ..analysis.calibration import parse_strategy
    from ..train import optim
    from ..train.loop import calibrate, evaluate, fit, with_config
    data, model = shared["data"], shared["model"]
    per_layer = {n: dict(o) for n, o in task["per_layer"].items()}
    for n, (xb, yb) in task["bits"].items():
        per_layer.setdefault(n, {}).update(x_quant_bits=int(xb), y_quant_bits=int(yb))
    q = with_config(model, dict(task["quant"], use_quantization=True, noise_level=0), per_layer)
    strategy, param = parse_strategy(task["calibration"])
    calibrate(q, data.x_train, task["batch_size"], strategy=strategy, param=param,
              per_layer=task["layer_calibration"] or None, lengths=data.lengths_train, time_axis=data.time_axis)
    if task["finetune_epochs"]:
        fit(q, data, optimizer=optim.Adam(q, lr=task["lr"]), epochs=task["finetune_epochs"], batch_size=task["batch_size"],
            seed=task["seed"], log=lambda s: None, progress=False)
    out = {"bits": task["bits"], "val": evaluate(q, data.x_val, data.y_val, lengths=data.lengths_val,
                                                 time_axis=data.time_axis)}
    if task.get("test"):
        out["test"] = evaluate(q, data.x_test, data.y_test, lengths=data.lengths_test, time_axis=data.time_axis)
    return out


def _score(result: dict) -> Tuple[str, float]:
    """(the task's main metric, its value signed so that higher is better) on the validation split."""
    from ..train.tasks import main_metric
    m, v, higher = main_metric(result["val"])
    return m, (v if higher else -v)


def _points(metric: str) -> float:
    """How many budget points one unit of the metric is: 100 for a share (accuracy), 1 otherwise (dB, loss)."""
    from ..train.tasks import SHARES
    return 100.0 if metric in SHARES else 1.0


def search(names: List[str], costs: Dict[str, dict], budget: float, run: Callable[[List[Bits]], List[dict]],
           reference: Optional[float] = None, log: Callable[[str], None] = print) -> dict:
    """The search of the module docstring. run(list of Bits) -> their results (`evaluate_candidate`), in
    order: the caller's executor. budget is in the task's main metric's points (accuracy, frame accuracy:
    percentage points; snr_db: dB; a loss: its own units). reference: the float model's metric when the reference is float, else None (all-12).

    Returns {"bits": the choice, "reference": ..., "target": ..., "tried": [rows], "result": the choice's
    result, "met": whether it is within the budget, "all8": ..., "all12": ...}."""
    tried = []

    def batch(cands: List[Bits], phase: str) -> List[dict]:
        res = run(cands)
        for c, r in zip(cands, res):
            if r.get("status") == "failed":
                raise RuntimeError(f"search-bits: a candidate failed in its worker: {r.get('error')}")
            m, s = _score(r)
            tried.append({"phase": phase, "bits": c, "metric": m, "value": s if m != "loss" else -s,
                          **total_cost(costs, c)})
        return res

    choices = {n: (tuple(costs[n]["x_bits"]), tuple(costs[n]["y_bits"])) for n in names}
    all12, all8 = widest(costs, names), {n: (8, 8) for n in names}
    free = lambda n, t: len(choices[n][t]) > 1  # noqa: E731 - a width the search may choose
    r12, r8 = batch([all12, all8], "reference")
    metric, s12 = _score(r12)
    ref = s12 if reference is None else (reference if metric != "loss" else -reference)
    target = ref - budget / _points(metric)  # budget in percentage points of an accuracy, dB of an SNR
    passes = lambda r: _score(r)[1] >= target - 1e-12  # noqa: E731
    log(f"reference ({'float' if reference is not None else 'all 12-bit'}): {metric} {_show(metric, ref)}; "
        f"target >= {_show(metric, target)} (budget {budget} points); all 8-bit: {_show(metric, _score(r8)[1])}")
    # 2: one width at a time, the others at 12
    cands, where = [], []
    for n in names:
        for t in (0, 1):
            for b in choices[n][t][:-1]:
                c = dict(all12)
                c[n] = (b, all12[n][1]) if t == 0 else (all12[n][0], b)
                cands.append(c)
                where.append((n, t, b))
    res = batch(cands, "sensitivity")
    ok = {(n, t, b): passes(r) for (n, t, b), r in zip(where, res)}
    choice = {}
    for n in names:
        w = []
        for t in (0, 1):
            narrower = choices[n][t][:-1]
            good = [b for b in narrower if all(ok[(n, t, b2)] for b2 in narrower if b2 >= b)]
            w.append(min(good) if good else choices[n][t][-1])
        choice[n] = tuple(w)
    # 3: together, widened where it pays most until within the budget
    cur = batch([choice], "together")[0]
    while not passes(cur):
        steps = [(n, t) for n in names for t in (0, 1) if free(n, t) and choice[n][t] < choices[n][t][-1]]
        if not steps:
            break
        cands = []
        for n, t in steps:
            c = dict(choice)
            c[n] = (choice[n][0] + 1, choice[n][1]) if t == 0 else (choice[n][0], choice[n][1] + 1)
            cands.append(c)
        res = batch(cands, "widen")
        base_s, base_c = _score(cur)[1], total_cost(costs, choice)["cost"]
        gain = [(_score(r)[1] - base_s) / max(1, total_cost(costs, c)["cost"] - base_c) for c, r in zip(cands, res)]
        k = int(np.argmax(gain))
        choice, cur = cands[k], res[k]
        log(f"widened {steps[k][0]} {'xy'[steps[k][1]]} to {choice[steps[k][0]][steps[k][1]]} bits: "
            f"{metric} {_show(metric, _score(cur)[1])}")
    return {"bits": choice, "metric": metric, "reference": ref, "target": target, "tried": tried,
            "result": cur, "met": passes(cur), "all8": r8, "all12": r12}


def widest(costs: Dict[str, dict], names: List[str]) -> Bits:
    """Every layer at its widest input and output (12 bits where it can; see `layer_cost`)."""
    return {n: (max(costs[n]["x_bits"]), max(costs[n]["y_bits"])) for n in names}


def _show(metric: str, v: float) -> str:
    """A score (signed so that higher is better) shown as the metric's own value."""
    from ..train.tasks import format_metric
    return format_metric(metric, -v if metric == "loss" else v)


def overrides_toml(bits: Bits, layer_types: Dict[str, str]) -> str:
    """The [model.overrides] block of a choice, to paste into the run config (merge with any existing
    table of the same layer)."""
    lines = []
    for n, (xb, yb) in bits.items():
        lines += [f'[model.overrides."{n}"]   # {layer_types.get(n, "")}'.rstrip(), f"x_quant_bits = {xb}",
                  f"y_quant_bits = {yb}", ""]
    return "\n".join(lines)
