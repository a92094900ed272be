"""Layer configuration: the fields of witin_nn's layer config (chip.md §1), validated once, frozen.

`LayerConfig` accepts the vendor's names and values so users can move over unchanged:
``auto_scale_updata_step`` (the vendor's spelling), ``HandleNegInType.PN``, ``NoiseModel.NORMAL`` or plain
strings. Impossible values are refused at construction with a `ValueError`/`TypeError` naming the field,
the value and what is allowed.

Global defaults: layers built with ``config=None`` take `get_default_config()`; change it with
`set_default_config` or, for a block of code, the `default_config` context manager. Presets:
`PRESETS` / `preset(name)` with ``"float"``, ``"qat"`` and ``"qat_nat"``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import numbers
from typing import Optional, Tuple, Union

import numpy as np

from .noise import NOISE_MODELS, UNDEFINED_MODELS

__all__ = ["LayerConfig", "HandleNegInType", "NoiseModel", "get_default_config", "set_default_config",
           "default_config", "preset", "PRESETS"]


class HandleNegInType(str, enum.Enum):
    """How an array layer feeds negative inputs to the unsigned 8-bit DAC (chip.md §3)."""
    FALSE = "FALSE"  # negative inputs become 0
    PN = "PN"        # [relu(x), relu(-x)] against [W; -W]
    Shift = "Shift"  # x + shift_num, the bias absorbs the offset


class NoiseModel(str, enum.Enum):
    """Analog noise models named by the vendor; only NORMAL has defined arithmetic (chip.md §6)."""
    NORMAL = "NORMAL"
    MBS = "MBS"
    SIMPLE = "SIMPLE"
    ARRMDL = "ARRMDL"


_NEG = {m.value.lower(): m.value for m in HandleNegInType}
BiasD = Union[float, Tuple[float, ...]]


def _enum_value(field, value, table, allowed):
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool) and field == "handle_neg_in" and value is False:
        value = "FALSE"
    if not isinstance(value, str) or value.lower() not in table:
        raise ValueError(f"LayerConfig: {field}={value!r} is not allowed; expected one of {allowed}")
    return table[value.lower()]


def _noise_model_name(value):
    name = value.value if isinstance(value, enum.Enum) else value
    known = {k.lower(): k for k in NOISE_MODELS}
    if isinstance(name, str) and name.lower() in known:
        return known[name.lower()]
    if isinstance(name, str) and name.upper() in UNDEFINED_MODELS:
        raise ValueError(f"LayerConfig: noise_model={name!r} is not supported: its arithmetic is not defined "
                         f"(the vendor's formulas are unknown); expected one of {sorted(NOISE_MODELS)}")
    raise ValueError(f"LayerConfig: noise_model={value!r} is not allowed; expected one of {sorted(NOISE_MODELS)}")


def _int_in(field, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"LayerConfig: {field}={value!r} must be an integer in {lo}..{hi}")
    if float(value) != int(value) or not lo <= int(value) <= hi:
        raise ValueError(f"LayerConfig: {field}={value!r} is not allowed; expected an integer in {lo}..{hi}")
    return int(value)


def _positive(field, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"LayerConfig: {field}={value!r} must be a positive number")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"LayerConfig: {field}={value!r} is not allowed; expected a finite number > 0")
    return v


def _flag(field, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise TypeError(f"LayerConfig: {field}={value!r} must be True or False")


def _bias_d(value) -> BiasD:
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.ndim > 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"LayerConfig: bias_d={value!r} is not allowed; expected a finite number or a 1-D "
                         f"sequence of finite numbers (one per output)")
    if arr.ndim == 0:
        return float(arr)
    return tuple(float(v) for v in arr)


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """Quantization and noise settings of one layer (chip.md §1; vendor field names).

    Every field is validated at construction; the object is immutable (use `replace`).
    """

    use_quantization: bool = False
    """False: float layer (torch formula). True: the chip's QAT arithmetic (chip.md §2-§4)."""
    noise_model: str = "NORMAL"
    """Analog noise model. Only "NORMAL" has defined arithmetic; the vendor's other names are refused."""
    noise_level: int = 0
    """0..9; 0 = no noise. Applied on every quantized forward, training and inference (chip.md §6)."""
    x_quant_bits: int = 8
    """8..12 input bits; above 8 the input is bit-split into an analog low byte and digital high bits."""
    y_quant_bits: int = 8
    """8..12 output bits."""
    weight_quant_bits: int = 8
    """The array holds int8 weights: only 8 is defined."""
    scale_x: float = 1.0
    """Input scale sx (x·sx is the input code); a power of two in practice."""
    scale_y: float = 1.0
    """Output scale sy (outputs are multiples of 1/sy)."""
    scale_weight: float = 1.0
    """Weight scale sw (W·sw is the int8 weight code)."""
    use_auto_scale: bool = True
    """Derive the scales from io_max (chip.md §5). The vendor's default is True."""
    auto_scale_update_step: int = 2
    """Training forwards per epoch that collect io_max (vendor spelling auto_scale_updata_step accepted)."""
    handle_neg_in: str = "FALSE"
    """"FALSE", "PN" or "Shift" (chip.md §3)."""
    shift_num: float = 1.0
    """Input offset for Shift, in float input units (>= 0)."""
    bias_row_N: int = 8
    """Array rows that carry the bias; the bias code is clipped to [-128·N, 127·N]."""
    bias_d: BiasD = 0.0
    """Bias moved to the digital part when x_quant_bits > 8: a number or one per output (stored as a tuple)."""
    w_clip: Optional[float] = None
    """Weight clamp to [-w_clip, w_clip] (chip.md §7), or None."""
    to_linear: bool = False
    """Conv2d/ConvTranspose2d computed as Linear on unfolded patches (chip.md §4)."""
    scale_x_left: float = 1.0
    """Scale of the left input of two-input digital ops (chip.md §8)."""
    scale_x_right: float = 1.0
    """Scale of the right input of two-input digital ops (chip.md §8)."""
    rounding: str = "round"
    """How the arrays' division by G rounds: "round" (half to even: witin_nn, the default) or "floor" (Witmem's
    mapper from 0.8.8 on). It touches every array requantization (Linear, Conv2d, ConvTranspose2d, the GRU's
    three arrays, the bit split's digital part); inputs, tables and digital ops are unchanged
    (docs/firmware-export.md)."""
    auto_scale_updata_step: dataclasses.InitVar[Optional[int]] = None

    def __post_init__(self, auto_scale_updata_step):
        put = object.__setattr__
        if auto_scale_updata_step is not None:
            put(self, "auto_scale_update_step", auto_scale_updata_step)
        for f in ("use_quantization", "use_auto_scale", "to_linear"):
            put(self, f, _flag(f, getattr(self, f)))
        put(self, "noise_model", _noise_model_name(self.noise_model))
        put(self, "noise_level", _int_in("noise_level", self.noise_level, 0, 9))
        put(self, "x_quant_bits", _int_in("x_quant_bits", self.x_quant_bits, 8, 12))
        put(self, "y_quant_bits", _int_in("y_quant_bits", self.y_quant_bits, 8, 12))
        put(self, "weight_quant_bits", _int_in("weight_quant_bits", self.weight_quant_bits, 8, 8))
        for f in ("scale_x", "scale_y", "scale_weight", "scale_x_left", "scale_x_right"):
            put(self, f, _positive(f, getattr(self, f)))
        put(self, "auto_scale_update_step",
            _int_in("auto_scale_update_step", self.auto_scale_update_step, 1, 2 ** 31 - 1))
        put(self, "handle_neg_in", _enum_value("handle_neg_in", self.handle_neg_in, _NEG,
                                               [m.value for m in HandleNegInType]))
        if isinstance(self.shift_num, bool) or not isinstance(self.shift_num, numbers.Real) \
                or not math.isfinite(float(self.shift_num)) or float(self.shift_num) < 0:
            raise ValueError(f"LayerConfig: shift_num={self.shift_num!r} is not allowed; expected a finite "
                             f"number >= 0")
        put(self, "shift_num", float(self.shift_num))
        put(self, "bias_row_N", _int_in("bias_row_N", self.bias_row_N, 1, 1 << 16))
        if self.rounding not in ("round", "floor"):
            raise ValueError(f"LayerConfig: rounding={self.rounding!r} is not allowed; expected 'round' (half to "
                             f"even, witin_nn) or 'floor' (the mapper from 0.8.8 on)")
        put(self, "bias_d", _bias_d(self.bias_d))
        if self.w_clip is not None:
            put(self, "w_clip", _positive("w_clip", self.w_clip))

    # ----------------------------------------------------------------- helpers
    def replace(self, **changes) -> "LayerConfig":
        """A copy with `changes` applied (validated like the constructor; vendor names accepted)."""
        if "auto_scale_updata_step" in changes:
            changes["auto_scale_update_step"] = changes.pop("auto_scale_updata_step")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-Python field values (bias_d as a float or a list), suitable for JSON/HDF5 attributes."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(d["bias_d"], tuple):
            d["bias_d"] = list(d["bias_d"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LayerConfig":
        """Inverse of `to_dict`; unknown keys are refused with their names."""
        names = {f.name for f in dataclasses.fields(cls)} | {"auto_scale_updata_step"}
        extra = sorted(set(d) - names)
        if extra:
            raise ValueError(f"LayerConfig: unknown field(s) {extra}; expected some of {sorted(names)}")
        return cls(**d)

    def bias_d_array(self, n_out: int) -> np.ndarray:
        """bias_d as a float32 (n_out,) array; a per-output bias_d must have n_out entries."""
        if isinstance(self.bias_d, tuple):
            if len(self.bias_d) != n_out:
                raise ValueError(f"LayerConfig: bias_d has {len(self.bias_d)} entries; expected one per output "
                                 f"({n_out}) or a single number")
            return np.asarray(self.bias_d, np.float32)
        return np.full(n_out, self.bias_d, np.float32)


PRESETS = {
    "float": LayerConfig(use_quantization=False),
    "qat": LayerConfig(use_quantization=True, handle_neg_in="PN", x_quant_bits=8, y_quant_bits=8, scale_x=16,
                       scale_y=16, scale_weight=16, auto_scale_update_step=20, use_auto_scale=True),
    "qat_nat": LayerConfig(use_quantization=True, handle_neg_in="PN", x_quant_bits=8, y_quant_bits=8,
                           scale_x=16, scale_y=16, scale_weight=16, auto_scale_update_step=20,
                           use_auto_scale=True, noise_level=4),
}
"""The vendor's recipe presets: float training, QAT (PN, 8/8 bits, scales 16, step 20), QAT+NAT (noise 4)."""


def preset(name: str, **overrides) -> LayerConfig:
    """The preset `name` ("float", "qat", "qat_nat"), with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown name {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


_default = LayerConfig()


_frozen_setattr = LayerConfig.__setattr__


def _setattr_with_hint(self, name, value):
    """The vendor's manual writes `cfg.use_quantization = True`; a LayerConfig is frozen (layers and models
    share one), so the error shows the call that does it."""
    try:
        _frozen_setattr(self, name, value)
    except dataclasses.FrozenInstanceError:
        raise dataclasses.FrozenInstanceError(
            f"LayerConfig is frozen (layers may share one): instead of cfg.{name} = {value!r}, write "
            f"cfg = cfg.replace({name}={value!r}) (validated like the constructor)") from None


LayerConfig.__setattr__ = _setattr_with_hint


def get_default_config() -> LayerConfig:
    """The config that layers built with ``config=None`` take."""
    return _default


def set_default_config(config: LayerConfig) -> LayerConfig:
    """Set the global default config; returns the previous one."""
    global _default
    if not isinstance(config, LayerConfig):
        raise TypeError(f"set_default_config: expected a LayerConfig, got {type(config).__name__}")
    old, _default = _default, config
    return old


@contextlib.contextmanager
def default_config(config: LayerConfig):
    """``with default_config(preset("qat")): ...`` builds layers with that config, then restores."""
    old = set_default_config(config)
    try:
        yield config
    finally:
        set_default_config(old)
