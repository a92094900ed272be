"""Scales from io_max, rounding helpers and the auto-scale observer (chip.md §5).

The observer implements the vendor's schedule exactly: at the start of an epoch every io_max is reset to
8.0; the first `auto_scale_update_step` training forwards record max|x|, max|W| and the y statistic and
set io_max to this epoch's running maximum; from the step-th training forward on, the current scales are
derived from io_max; an inference forward derives and keeps the scales from io_max before computing.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Iterable

import numpy as np

__all__ = ["code_range", "WEIGHT_RANGE", "pow2_exponent", "scale_from_max", "gain", "shift_offset", "ScaleObserver",
           "IO_MAX_RESET"]

IO_MAX_RESET = 8.0
"""The constant every io_max is reset to at the start of an epoch (the vendor's module.train())."""


def pow2_exponent(s: float):
    """k with s = 2^k exactly, or None when s is not a power of two."""
    mant, exp = math.frexp(float(s))
    return exp - 1 if mant == 0.5 else None


def scale_from_max(m: float, q: int) -> float:
    """2^(q-1) / 2^ceil(log2 m): the power-of-two scale that maps |values| <= m into q-bit codes.

    Computed exactly (frexp), so a maximum that is itself a power of two maps to 2^(q-1) codes.
    `m` must be > 0.
    """
    mant, exp = math.frexp(float(np.float32(m)))  # m = mant·2^exp, mant in [0.5, 1)
    ceil_log2 = exp - 1 if mant == 0.5 else exp
    return math.ldexp(1.0, q - 1 - ceil_log2)


def gain(sx: float, sw: float, sy: float) -> int:
    """G = R(sx·sw/sy) (float64 ratio, half to even): the integer gain of the bit split and of noise."""
    return int(np.rint(float(sx) * float(sw) / float(sy)))


WEIGHT_RANGE = (-128, 127)
"""The int8 weight codes of the array (chip.md §2): Wq = R(clip(W·sw, -128, 127))."""


def code_range(bits: int, signed: bool = True):
    """(lo, hi) of a `bits`-bit code: signed Y(bits) = [-2^(bits-1), 2^(bits-1) - 1] (the array's and the
    digital ops' outputs, chip.md §2), unsigned U(bits) = [0, 2^bits - 1] (the DAC's input codes). The one
    home of these ranges: layers, the array, the engine and the export all read them here."""
    bits = int(bits)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def shift_offset(shift_num: float, sx: float, xb: int) -> float:
    """s = R(f32(min(shift_num·sx, 2^xb))): the Shift input offset in codes (chip.md §3).

    The product and the min are taken in float64, then rounded to float32, then half to even:
    9.6 -> 10, 2.5 -> 2, 447 -> 256 at 8 bits.
    """
    return float(np.rint(np.float32(min(float(shift_num) * float(sx), 2.0 ** xb))))


class ScaleObserver:
    """The auto-scale state of one layer: current scales, io_max, the epoch's counter and maxima.

    Parameters
    ----------
    owner : str
        Name used in warnings.
    stats : dict
        The layer's `stats`; io_max of tensor ``t`` lives in ``stats["io_max_" + t]`` as a float32 0-d array.
    names : iterable of str
        Tensor names, e.g. ("x", "weight", "y").
    init_scales : dict name -> float
        The user's scales (the current scales until auto-scale replaces them).
    init_io_max : dict name -> float
        io_max of a freshly built layer (x_quant_bits, 8, y_quant_bits for array layers).
    step : int
        auto_scale_update_step.
    enabled : bool
        use_auto_scale (and quantization) on; when off, the scales never change and io_max only resets.
    """

    def __init__(self, owner: str, stats: dict, names: Iterable[str], init_scales: Dict[str, float],
                 init_io_max: Dict[str, float], step: int, enabled: bool):
        self.owner = owner
        self.stats = stats
        self.names = tuple(names)
        self.scales = {n: float(init_scales[n]) for n in self.names}
        for n in self.names:
            stats["io_max_" + n] = np.array(init_io_max[n], np.float32)
        self.step = int(step)
        self.enabled = bool(enabled)
        self.counter = 0
        self._warned = set()
        self.pinned: frozenset = frozenset()

    def pin(self, names: Iterable[str], qs: Dict[str, int]) -> None:
        """Keep the io_max of `names` as it is now (a calibration strategy's choice): epochs no longer reset
        it and training forwards no longer record it; the current scales follow it from now on. The other
        tensors (the weight) keep the vendor's schedule. Not part of `state()`: whoever calibrates pins."""
        names = frozenset(names)
        bad = names - set(self.names)
        if bad:
            raise ValueError(f"{self.owner}: cannot pin io_max of {sorted(bad)}; the observer has {list(self.names)}")
        self.pinned = self.pinned | names
        if self.enabled:
            self._derive(qs, only=names)

    def begin_epoch(self) -> None:
        """The vendor's module.train(): counter 0, io_max all 8.0, current scales kept."""
        self.counter = 0
        for n in self.names:
            if n not in self.pinned:
                self.stats["io_max_" + n] = np.array(IO_MAX_RESET, np.float32)

    def _derive(self, qs: Dict[str, int], only=None) -> None:
        for n in (self.names if only is None else [n for n in self.names if n in only]):
            m = float(self.stats["io_max_" + n])
            if m > 0 and math.isfinite(m):
                self.scales[n] = scale_from_max(m, qs[n])
            elif n not in self._warned:
                self._warned.add(n)
                warnings.warn(f"{self.owner}: io_max of {n} is {m}; keeping the previous scale "
                              f"{self.scales[n]} (an all-zero {n} gives no scale)", RuntimeWarning, stacklevel=4)

    def scales_for_forward(self, train: bool, qs: Dict[str, int]) -> Dict[str, float]:
        """Scales to compute this forward with; an inference forward first derives (and keeps) them."""
        if self.enabled and not train:
            self._derive(qs)
        return dict(self.scales)

    def wants_record(self, train: bool) -> bool:
        """True when this training forward will record statistics (counter+1 <= step)."""
        return self.enabled and train and self.counter + 1 <= self.step

    def after_train_forward(self, maxima: Dict[str, float], qs: Dict[str, int]) -> None:
        """Record one training forward's maxima (ignored past the step) and update the scales."""
        if not self.enabled:
            return
        self.counter += 1
        if self.counter <= self.step:
            for n in self.names:
                if n in self.pinned:
                    continue
                key = "io_max_" + n
                v = np.float32(maxima[n])
                # the first record of an epoch replaces the reset value; later ones keep the running max
                cur = self.stats[key] if self.counter > 1 else np.float32(-np.inf)
                self.stats[key] = np.array(max(np.float32(cur), v), np.float32)
        if self.counter >= self.step:
            self._derive(qs)

    def state(self) -> dict:
        """Everything beyond `stats` needed to resume: current scales and the epoch counter."""
        return {"scales": dict(self.scales), "counter": self.counter}

    def load_state(self, state: dict) -> None:
        self.scales = {n: float(state["scales"][n]) for n in self.names}
        self.counter = int(state["counter"])
