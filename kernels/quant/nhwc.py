"""Input quantization fused with the change to channels-last (the channels-last conv path's inputs).

`quantize.quantize_input` wrote NCHW codes, then `layout.nchw_to_nhwc_f32` copied them to NHWC and
`layout.pad_nhwc` padded that for ConvTranspose2d's forward: three passes over the codes. Here each image
is quantized channels-first into a buffer (in cache) and its rows are moved through the 8 x 8 register
transposes (`layout._row_blocks`) into the NHWC outputs the caller asks for, unpadded and/or padded.
"""
import numpy as np
from numba import prange

from .._jit import jit, kernel
from ..layout import _fill, _pad_row, _row_blocks
from .quantize import input_code, input_codes_pn

__all__ = ["quantize_nhwc"]


@kernel(raw=True)
def quantize_nhwc(x, sx, shift, lo, hi, pn, xp, xn, pp, pnp, top, left, fill, mask):
    """`quantize.quantize_input` (no split; PN as two branches) of x (B, C, H, W) float32 into channels-last codes:
        FALSE/Shift: q = R(clip(x·sx + shift, [lo, hi]));  PN: qp, qn = R(clip(relu(±x)·sx, [lo, hi]))
    xp, xn (B, H, W, C) out: the codes (xn: PN's negative branch); pp, pnp (B, Hp, Wp, C) out: the same at
    [top + h, left + w], `fill` (pp) or 0 (pnp) elsewhere. Any output of shape (0, 0, 0, 0) is not written
    (xn, pnp unless PN). mask (B, C, H, W) int8 out, as quantize_input's. Returns the number of non-finite x."""
    B, C, H, W = x.shape
    Hp, Wp = pp.shape[1], pp.shape[2]
    want_u, want_p = xp.shape[0] > 0, pp.shape[0] > 0
    xf, mf = x.reshape(x.size), mask.reshape(mask.size)
    xpf, xnf, ppf, pnf = xp.reshape(xp.size), xn.reshape(xn.size), pp.reshape(pp.size), pnp.reshape(pnp.size)
    sx, shift, lo, hi = np.float32(sx), np.float32(shift), np.float32(lo), np.float32(hi)
    fill = np.float32(fill)
    bad = 0
    for b in prange(B):
        bad += _image(xf, mf, b, (C, H, W, Hp, Wp, top, left), (sx, shift, lo, hi, fill), pn, want_u, want_p, xpf,
                      xnf, ppf, pnf)
    if want_p:
        for bp in prange(B * Hp):  # the padding rows above and below the image
            h = bp % Hp - top
            if h < 0 or h >= H:
                _fill(ppf, bp * Wp * C, Wp * C, fill)
                if pn:
                    _fill(pnf, bp * Wp * C, Wp * C, np.float32(0))
    return bad


@jit
def _image(xf, mf, b, geo, q, pn, want_u, want_p, xpf, xnf, ppf, pnf):
    """Image b of `quantize_nhwc`: its codes channels-first in one flat run (a row's 16-32 values per channel
    are too short for the vector loop), then each row through the register transposes. geo = (C, H, W, Hp,
    Wp, top, left), q = (sx, shift, lo, hi, fill) (tuples: free in Numba). Returns its non-finite count."""
    C, H, W, Hp, Wp, top, left = geo
    sx, shift, lo, hi, fill = q
    n = C * H * W
    zero = np.float32(0)
    tp = np.empty(n, np.float32)
    tn = np.empty(n if pn else 0, np.float32)
    s0 = np.uint64(b * n)
    nb = 0
    if pn:
        for k in range(n):
            v = xf[s0 + np.uint64(k)]
            nb += 0 if abs(v) < np.inf else 1
            tp[k], tn[k], mf[s0 + np.uint64(k)] = input_codes_pn(v, sx, lo, hi)
    else:
        for k in range(n):
            v = xf[s0 + np.uint64(k)]
            nb += 0 if abs(v) < np.inf else 1
            tp[k], mf[s0 + np.uint64(k)] = input_code(v, sx, shift, lo, hi)
    for h in range(H):
        if want_u:
            o0 = (b * H + h) * W * C
            _row_blocks(tp, h * W, C, H * W, W, xpf, o0)
            if pn:
                _row_blocks(tn, h * W, C, H * W, W, xnf, o0)
        if want_p:
            r0 = (b * Hp + top + h) * Wp * C
            _pad_row(ppf, r0, Wp, W, C, left, h, H, fill)
            _row_blocks(tp, h * W, C, H * W, W, ppf, r0 + left * C)
            if pn:
                _pad_row(pnf, r0, Wp, W, C, left, h, H, zero)
                _row_blocks(tn, h * W, C, H * W, W, pnf, r0 + left * C)
    return nb
