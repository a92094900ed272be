"""What a quantized forward hands its backward, one typed record per array family (no shared dict).

Slotted dataclasses: a misspelt field is an AttributeError, not a silently missing key. `bias_tail` reads the
bias fields (noisy, bmask, b_factor, s, P, has_bias) of either an `ArrayCtx` or a `ConvCtx`.
Shapes: B rows (batch), K inputs (Ka = 2K for PN's concatenated layout), O outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["ArrayCtx", "ConvCtx", "GRUCtx"]


@dataclass(slots=True)
class ArrayCtx:
    """`matrix.array_forward` -> `array_backward` (Linear, Conv2d's to_linear form)."""
    owner: str
    x_shape: Tuple[int, ...]   # (B, K)
    wq: np.ndarray             # (O, K) float32 weight codes
    wmask: np.ndarray          # (O, K) uint8: 1 where the weight clamps pass
    xa: np.ndarray             # (B, Ka) float32 analog input codes
    xd: np.ndarray             # (B, K) float32 digital input codes of the bit split (empty without)
    xmask: np.ndarray          # (B, K) int8 input mask (PN: +1 pos, -1 neg, 0 clipped)
    bmask: np.ndarray          # (O,) uint8 bias clamp mask
    concat: bool               # PN's [relu(x), relu(-x)] layout
    split: bool                # x_quant_bits > 8: the bit split
    noisy: bool
    s: float                   # Shift's input offset (0 otherwise)
    sx: float
    sw: float
    sy: float
    P: np.float32              # sx·sw
    G: int                     # R(sx·sw/sy)
    has_bias: bool
    N: int                     # bias_row_N
    ymask: Optional[np.ndarray] = None     # (B, O) uint8 output clamp mask
    omask: Optional[np.ndarray] = None     # (B, O) uint8 the split's final clamp mask
    wn: Optional[np.ndarray] = None        # (Ka, O) noisy weights
    w_factor: Optional[np.ndarray] = None  # d(noisy weight)/d(code), the noise model's derivative
    b_factor: Any = None                   # d(noisy bias term)/d(Bq)


@dataclass(slots=True)
class ConvCtx:
    """`conv.quantized.qconv_forward` -> `qconv_backward` (Conv2d / ConvTranspose2d with to_linear off)."""
    owner: str
    transposed: bool
    layout: Any                # the `conv.layouts` layout the call ran in
    x_shape: Tuple[int, ...]   # (B, C, H, W)
    w_shape: Tuple[int, ...]
    co: int
    wq: np.ndarray
    wmask: np.ndarray
    wneg: Optional[np.ndarray]     # PN's negative-branch codes R(clip(-W·sw))
    wnmask: Optional[np.ndarray]
    xq: np.ndarray                 # the input codes in the layout's form
    xn: Optional[np.ndarray]       # PN's negative-branch codes
    xmask: np.ndarray
    bmask: np.ndarray
    pn: bool
    noisy: bool
    s: float
    sx: float
    sw: float
    sy: float
    P: np.float32
    G: int
    has_bias: bool
    pad: float                     # the code of a zero input (the padding)
    ymask: Optional[np.ndarray] = None
    wa: Optional[np.ndarray] = None        # noisy weights (else wq)
    wna: Optional[np.ndarray] = None       # noisy negative-branch weights (else wneg)
    w_factor: Any = None
    wn_factor: Any = None
    b_factor: Any = None


@dataclass(slots=True)
class GRUCtx:
    """`gru.qgru_forward` -> `qgru_backward` (the quantized GRU's three arrays over a sequence)."""
    x_shape: Tuple[int, ...]   # (N, T, I)
    h0: np.ndarray             # (N, H) float32 initial state
    h0q: np.ndarray            # (N, H) its Q7 codes
    hq: np.ndarray             # (T, N, H) the hidden codes
    F: np.ndarray              # (T, N, NF, H) the forward's saved codes and backward factors
    hz: np.ndarray             # the h input codes of the zr array, per step
    hh: np.ndarray             # and of the hn array
    arr: dict                  # per array ("zr", "in", "hn"): its codes, masks and factors
    xz: tuple                  # (x codes, x masks) of the zr array
    xi: tuple                  # and of the in array
    sc: dict                   # the scales the forward ran with
    pn: bool
    stacked: bool              # [pos | neg] rows (noise) rather than signed codes
    amax_acc: np.ndarray       # max |accumulator| per array (the auto-scale statistics)
