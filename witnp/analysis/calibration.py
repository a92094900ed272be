"""Calibration strategies: which io_max (and so which power-of-two scale) an array layer's input and output get.

    extrema          max |v|: the vendor's running maximum (the default; `train.calibrate` as before)
    moving_average   the per-batch maxima averaged with momentum 0.9 (a = 0.9·a + 0.1·m, from the first)
    percentile:P     the P-th percentile of |v| (default 99.99): outliers beyond it clip
    mse              the io_max among max|v|/2^k (k = 0..6) whose scale gives the least squared quantization
                     error of |v| (codes 0..2^(q-1)-1, clipped)
    kl               the threshold T of |v| whose 128-level quantization of the histogram (1024 bins up to
                     max|v|) loses the least information (KL divergence, TensorRT's entropy calibration)

Scales are powers of two: a scale is scale_from_max(io_max, q) = 2^(q-1) / 2^ceil(log2 io_max), so a strategy
only changes the scale when its io_max crosses a power of two; any io_max in (2^(k-1), 2^k] gives the same
scale. That is why the strategies differ on data with outliers (a few large values set max|v| one or more
powers above where most values lie) and agree on data without them.

`calibrate_arrays` applies a strategy to the array layers (Linear, Conv1d/2d, ConvTranspose2d) of a model: it
runs the float model unit by unit on the calibration data (as TensorRT does) and sets each quantized array
layer's io_max_x and io_max_y; io_max_weight stays max |W|. The GRU's arrays and the digital ops keep the
vendor's extrema.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from ..quant import scale_from_max

__all__ = ["STRATEGIES", "parse_strategy", "io_max", "calibrate_arrays", "strategy_layers"]

STRATEGIES = ("extrema", "moving_average", "percentile", "mse", "kl")


def parse_strategy(text: str) -> Tuple[str, Optional[float]]:
    """"name" or "percentile:P" -> (name, parameter); refuses unknown names and impossible percentiles."""
    name, _, arg = str(text).partition(":")
    if name not in STRATEGIES:
        raise ValueError(f"calibration {text!r}: expected one of {list(STRATEGIES)} (percentile:P with 0 < P <= 100)")
    if name == "percentile":
        try:
            p = float(arg) if arg else 99.99
        except ValueError:
            p = float("nan")
        if not 0 < p <= 100:
            raise ValueError(f"calibration {text!r}: the percentile must be a number in (0, 100]")
        return name, p
    if arg:
        raise ValueError(f"calibration {text!r}: {name} takes no parameter")
    return name, None


def io_max(batches: List[np.ndarray], strategy: str = "extrema", param: Optional[float] = None, bits: int = 8) -> float:
    """The io_max of a tensor seen in `batches` (arrays of any shape) under a strategy (module docstring).
    bits: the code width the scale is for (mse only)."""
    mags = [np.abs(np.asarray(b, np.float64)).ravel() for b in batches]
    a = np.concatenate(mags) if mags else np.zeros(0)
    if a.size == 0 or a.max() == 0:
        return 0.0
    if strategy == "extrema":
        return float(a.max())
    if strategy == "moving_average":
        avg = None
        for m in (float(x.max()) if x.size else 0.0 for x in mags):
            avg = m if avg is None else 0.9 * avg + 0.1 * m
        return float(avg)
    if strategy == "percentile":
        return float(np.percentile(a, 99.99 if param is None else param))
    if strategy == "mse":
        hi = 2 ** (bits - 1) - 1
        best = None
        for k in range(7):
            m = float(a.max()) / 2 ** k
            s = scale_from_max(m, bits)
            err = float(np.sum((np.minimum(np.rint(a * s), hi) / s - a) ** 2))
            if best is None or err < best[0]:
                best = (err, m)
        return best[1]
    if strategy == "kl":
        return _kl_threshold(a)
    raise ValueError(f"io_max: unknown strategy {strategy!r}")


def _kl_threshold(a, bins: int = 1024, levels: int = 128, stride: int = 8) -> float:
    hist, edges = np.histogram(a, bins=bins, range=(0.0, float(a.max())))
    hist = hist.astype(np.float64)
    best = (math.inf, bins)
    for i in range(levels, bins + 1, stride):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()  # the clipped tail lands in the last bin
        q = np.zeros(i)
        for idx in np.array_split(np.arange(i), levels):  # merge into `levels` bins, spread back over the non-empty
            nz = hist[idx] > 0
            if nz.any():
                q[idx[nz]] = hist[idx].sum() / nz.sum()
        p, qn = p / p.sum(), q / max(q.sum(), 1e-300)
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / np.maximum(qn[m], 1e-12))))
        if kl < best[0]:
            best = (kl, i)
    return float(edges[best[1]])


def calibrate_arrays(model, float_model, x, strategy: str, param: Optional[float] = None,
                     batch_size: int = 32, per_layer: Optional[dict] = None) -> None:
    """Set io_max_x and io_max_y of every quantized array layer of `model` (in its Sequential chains) from
    `float_model`'s activations on x (N, ...) float32, batch by batch (or on x given as a list of batches,
    e.g. of variable-length sequences cropped to their length), under `strategy`. float_model is `model`
    with quantization and noise off (``witnp.train.with_config(model, {"use_quantization": False,
    "noise_level": 0})``): the caller builds it, so this module stays below witnp.train. per_layer: {layer
    name: (strategy, param)} for layers that take their own strategy; a layer under "extrema" keeps the io_max
    it has (the running maximum). A name that is not a quantized array layer of a Sequential chain is refused."""
    from ..layers.container import units
    if strategy not in STRATEGIES:
        raise ValueError(f"calibrate: strategy {strategy!r}; expected one of {list(STRATEGIES)}")
    float_units = units(float_model)
    targets = units(model)
    seen = {i: ([], []) for i, _ in _calibrated_units(targets)}
    per_layer = dict(per_layer or {})
    names = [targets[i][0] for i in seen]
    for name, (s, _) in per_layer.items():
        if name not in names:
            raise ValueError(f"calibration for layer {name!r}: not a quantized Linear / Conv layer of the model's "
                             f"Sequential chains; these take a strategy: {names}")
        if s not in STRATEGIES:
            raise ValueError(f"calibration for layer {name!r}: strategy {s!r}; expected one of {list(STRATEGIES)}")
    chunks = x if isinstance(x, list) else [x[b0:b0 + batch_size] for b0 in range(0, len(x), batch_size)]
    for chunk in chunks:
        h = np.asarray(chunk, np.float32)
        for i, (_, layer) in enumerate(float_units):
            y = layer.forward(h, train=False)[0]
            if i in seen:
                seen[i][0].append(h)
                seen[i][1].append(y)
            h = y
    for i, (xs, ys) in seen.items():
        layer = targets[i][1]
        s, p = per_layer.get(targets[i][0], (strategy, param))
        if s == "extrema":
            continue
        qs = layer._qs()
        for name, data in (("x", xs), ("y", ys)):
            m = io_max(data, s, p, bits=qs[name])
            if m > 0:
                layer.stats["io_max_" + name] = np.array(m, np.float32)
        layer.stats["io_max_weight"] = np.array(np.abs(layer.params["weight"]).max(), np.float32)


def strategy_layers(model, strategy: str, per_layer: Optional[dict] = None) -> List[str]:
    """Names of the quantized array layers of `model`'s Sequential chains that a strategy other than extrema
    calibrates: those named in per_layer ({name: (strategy, param)}) with another strategy, and the rest when
    `strategy` is not extrema. These are the layers whose io_max a recipe keeps (pins) while it trains."""
    from ..layers.container import units
    per_layer = dict(per_layer or {})
    return [name for _, (name, _) in _calibrated_units(units(model))
            if per_layer.get(name, (strategy, None))[0] != "extrema"]


def _calibrated_units(targets):
    """[(index, (name, layer))] of the units a strategy calibrates: the quantized array layers (Linear,
    Conv1d/2d, ConvTranspose2d) among `targets` (`layers.container.units`)."""
    from ..layers.conv import Conv2d, ConvTranspose2d
    from ..layers.linear import Linear
    return [(i, u) for i, u in enumerate(targets)
            if isinstance(u[1], (Linear, Conv2d, ConvTranspose2d)) and u[1].config.use_quantization]
