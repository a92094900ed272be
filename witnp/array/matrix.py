"""The compute-in-memory array as a matrix operation: chip.md §2 (Linear), §3 (negative inputs), §6 (noise)
and §7 (straight-through backward). Linear uses it directly; Conv2d(to_linear) and the GRU's arrays reuse it.

Shapes: x (B, K) float32 rows of inputs, W (O, K) float32 in torch layout, b (O,) float32 or None.
Integer codes are carried in float32 (exact below 2^24) and multiplied on BLAS through
`witnp.kernels.matmul_exact`, which blocks the contraction so every accumulator is exact.

Forward, noise off, x_quant_bits = 8 (the vendor's float32 order):
    Wq = R(clip(clip(W, ±w_clip)·sw, -128, 127))          Xq = R(clip(x·sx + s, 0, 2^xb - 1))
    Bq = R(clip((f32(b·f32(sx·sw)) - s·ΣWq) / 128, -128N, 127N))
    u  = f32(Xq·Wqᵀ + 128·Bq) / f32(sx·sw);  y = R(clip(u·sy, Y(yb))) / sy
Bit split (x_quant_bits > 8): Xd = ⌊Xq/256⌋, Xl = Xq - 256·Xd; Bd = R(f32(bias_d·sx·sw)/128);
    Bl = R(clip((R(f32(b·sx·sw)/128)·128 - 128·Bd - s·ΣWq)/128, -128N, 127N))
    yl = R(clip(f32(Xl·Wqᵀ + 128·Bl)/f32(sx·sw)·sy, Y(yb)));  yd = R(f32(256·Xd·Wqᵀ + 128·Bd)/G)
    y  = clip(yl + yd, Y(yb)) / sy,   G = R(sx·sw/sy)
PN: input [relu(x), relu(-x)] against [Wqᵀ; -Wqᵀ]; without noise this equals the signed code
    relu-codes difference against Wqᵀ, which halves the product (the concatenated layout is kept with noise,
    where both halves get independent draws). Shift: s = R(f32(min(shift_num·sx, 2^xb))), folded into the bias.
Noise (level L > 0): E1 (Ka, O) on the integer weight matrix, then E2 (N, O) on the N bias rows
    r = Bq/N; analog accumulator (Xq·Wn + 128·Σrows) / G instead of the sx·sw/sy path.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import kernels as K
from ..memory import empty
from .ctx import ArrayCtx
from ..quant import code_range, gain, shift_offset
from ..errors import NonFiniteError

__all__ = ["bias_operand", "bias_codes", "array_forward", "array_backward", "bias_tail", "weight_grad_into",
           "checked_gain", "weight_codes", "noisy_bias", "amax"]

f32 = np.float32
_EMPTY = np.empty((0, 0), np.float32)


def amax(a) -> np.float32:
    """max |a| as float32 (0 for an empty array): the auto-scale statistic."""
    return f32(np.abs(a).max()) if np.size(a) else f32(0)


def checked_gain(owner: str, sx: float, sw: float, sy: float, why: str) -> int:
    """G = R(sx·sw/sy), refused when 0 (a forward that divides by it: the bit split or noise, chip.md §2)."""
    G = gain(sx, sw, sy)
    if G == 0:
        raise ValueError(f"{owner}: gain G = R(sx·sw/sy) = R({sx}·{sw}/{sy}) is 0, which the {why} divides by; "
                         f"expected sx·sw/sy >= 0.5 (raise scale_x or scale_weight, or lower scale_y)")
    return G


def weight_codes(owner: str, W: np.ndarray, cfg, sw: float, what: str = "weight"):
    """Wq = R(clip(clip(W, ±w_clip)·sw, -128, 127)) of a 2-D float32 weight, and its straight-through mask."""
    wq = np.empty(W.shape, np.float32)
    wmask = np.empty(W.shape, np.uint8)
    bad = K.quantize_weight(W, cfg.w_clip if cfg.w_clip is not None else math.inf, sw, wq, wmask, n=W.size)
    if bad:
        raise NonFiniteError(f"{owner}: {what} contains {bad} NaN or inf value(s); expected finite numbers")
    return wq, wmask


def bias_operand(term: np.ndarray) -> np.ndarray:
    """The bias term (O,) as the requantization kernels should read it: float32 when every value is exactly
    a float32 (always, in practice: 128·Bq, or a noisy float32 sum), else float64.

    The vendor adds the bias in float64 and rounds to float32: f32(f64(acc) + f64(bias)). For float32 acc
    and bias that equals the float32 sum f32(acc + bias): float64 carries 53 >= 2·24 + 2 bits, and double
    rounding through such a format is innocuous for a sum (Figueroa, "When is double rounding
    innocuous?", SIGNUM 1995). The float32 add vectorizes twice as wide: requant_nchw of the B32
    ConvTranspose2d's 524k accumulators 1.07 -> 0.51 ms (one core, min of 40)."""
    t32 = term.astype(np.float32)
    return t32 if np.array_equal(t32, term) else np.asarray(term, np.float64)


def noisy_bias(noise, rng, ba: np.ndarray, N: int):
    """The noisy bias term 128·Σ_rows (r + (a|r| + b)·E2), r = Bq/N on N rows (draws E2 (N, O)), and its
    derivative with respect to Bq (chip.md §6). Both (O,) float32."""
    O = ba.shape[0]
    e2 = noise.draw(rng, (N, O))
    rows = np.broadcast_to((ba / f32(N)).astype(np.float32), (N, O))
    term = (f32(128) * noise.apply(rows, e2).sum(axis=0, dtype=np.float32)).astype(np.float32)
    factor = (f32(128) * noise.derivative(rows, e2).sum(axis=0, dtype=np.float32) / f32(N)).astype(np.float32)
    return term, factor


def bias_codes(b, wq, cfg, P, s, split, n_out):
    """Analog bias code (Bq or Bl), its clamp mask, and the digital Bd (or None); all (O,) float32 (chip.md §2:
    Bq = R(clip((f32(b·f32(sx·sw)) - s·ΣWq) / 128, -128N, 127N)); the split form in the module docstring).
    The one home of the bias rule: the layers' forward and the firmware export both call it."""
    ba = np.empty(n_out, np.float32)
    bmask = np.empty(n_out, np.uint8)
    bd = np.zeros(n_out, np.float32)
    bvec = b if b is not None else np.zeros(n_out, np.float32)
    bias_d = cfg.bias_d_array(n_out) if split else bd
    K.quantize_bias(bvec, wq, P, s, bias_d, cfg.bias_row_N, split, ba, bmask, bd)
    return ba, bmask, (bd if split else None)


def array_forward(owner: str, x: np.ndarray, W: np.ndarray, b: Optional[np.ndarray], cfg, sx: float, sw: float,
                  sy: float, *, noise=None, rng=None, want_stats: bool = False, out_clip=None):
    """One quantized array forward.

    Parameters
    ----------
    owner : layer name for error messages.
    x : (B, K) float32, C-contiguous.   W : (O, K) float32.   b : (O,) float32 or None.
    cfg : LayerConfig (bits, handle_neg_in, shift_num, bias_row_N, bias_d, w_clip).
    sx, sw, sy : the current scales.
    noise : an active `witnp.noise.NoiseModelBase`, or None. rng : the draw source when noise is on.
    want_stats : also return the auto-scale statistics (max|x|, max|W|, the noiseless y statistic).
    out_clip : (lo, hi) of a final clip after rounding (Conv2d to_linear: int8), else Y(yb). With the bit split
        the sum yl + yd is clipped to it (the analog part is still clipped to Y(yb) first).

    Returns
    -------
    y : (B, O) float32, multiples of 1/sy.
    ctx : dict for `array_backward`.
    stats : dict(x=, weight=, y=) maxima, or None.
    """
    B, Kin = x.shape
    O = W.shape[0]
    xb, yb = cfg.x_quant_bits, cfg.y_quant_bits
    split = xb > 8
    pn = cfg.handle_neg_in == "PN"
    noisy = noise is not None and noise.active
    ylo, yhi = code_range(yb)
    G = checked_gain(owner, sx, sw, sy, "bit split" if split else "noisy forward") if (split or noisy) else None
    wq, wmask = weight_codes(owner, W, cfg, sw)

    s = 0.0
    if cfg.handle_neg_in == "Shift":
        s = shift_offset(cfg.shift_num, sx, xb)
    concat = pn and noisy
    Ka = 2 * Kin if concat else Kin
    xa = empty((B, Ka))
    xd = empty((B, Kin)) if split else _EMPTY
    xmask = empty((B, Kin), np.int8)
    bad = K.quantize_input(x, sx, s, *code_range(xb, signed=False), pn, concat, split, xa, xd, xmask, n=x.size)
    if bad:
        raise NonFiniteError(f"{owner}: x contains {bad} NaN or inf value(s); expected finite numbers")

    P = f32(sx * sw)
    Ba, bmask, Bd = bias_codes(b, wq, cfg, P, s, split, O)
    xbound = 255 if split else code_range(xb, signed=False)[1]
    ctx = ArrayCtx(owner=owner, x_shape=x.shape, wq=wq, wmask=wmask, xa=xa, xd=xd, xmask=xmask, bmask=bmask,
                   concat=concat, split=split, noisy=noisy, s=s, sx=sx, sw=sw, sy=sy, P=P, G=G, has_bias=b is not None,
                   N=cfg.bias_row_N)
    if noisy:
        wm = np.concatenate([wq.T, -wq.T], axis=0) if concat else wq.T  # (Ka, O), the array's layout
        e1 = noise.draw(rng, (Ka, O))
        wn = noise.apply(wm, e1)
        bias_term, b_factor = noisy_bias(noise, rng, Ba, cfg.bias_row_N)
        acc = xa @ wn
        div, mul = f32(G), f32(1)
        ctx.wn, ctx.w_factor, ctx.b_factor = wn, noise.derivative(wm, e1), b_factor
    else:
        acc = K.matmul_exact(xa, wq.T, xbound, 128)
        bias_term = 128.0 * Ba.astype(np.float64)
        div, mul = P, f32(sy)

    ya = empty((B, O))
    ymask = empty((B, O), np.uint8)
    lo2, hi2 = out_clip if out_clip is not None else (ylo, yhi)
    fl = cfg.rounding == "floor"
    K.requant(acc, _EMPTY, bias_operand(bias_term), div, mul, ylo, yhi, ylo if split else lo2,
              yhi if split else hi2, 1.0 if split else sy, ya, ymask, fl, n=acc.size)
    ctx.ymask = ymask
    y = ya
    if split:
        accd = K.matmul_exact(xd, wq.T, (1 << (xb - 8)) - 1, 128).astype(np.float64) * 256.0
        y = empty((B, O))
        omask = empty((B, O), np.uint8)
        K.combine_split(ya, accd, 128.0 * Bd.astype(np.float64), G, lo2, hi2, sy, y, omask, fl, n=y.size)
        ctx.omask = omask

    stats = None
    if want_stats:  # max|x|, max|W| (raw) and max|u| of the noiseless analog accumulator (chip.md §5)
        if noisy:
            xs = xa[:, :Kin] - xa[:, Kin:] if concat else xa
            acc = K.matmul_exact(xs, wq.T, xbound, 128)
            bias_term = 128.0 * Ba.astype(np.float64)
        u = (acc + bias_term).astype(np.float32) / P
        stats = {"x": amax(x), "weight": amax(W), "y": amax(u)}
    return y, ctx, stats


def array_backward(dy: np.ndarray, ctx: ArrayCtx):
    """Straight-through backward of `array_forward` (chip.md §7).

    dy : (B, O) float32. Returns dx (B, K) float32, dWq (O, K) float32 (the gradient w.r.t. the weight
    codes' float weight before the ·sw/clamp factor, see `weight_grad_into`), db (O,) float32 or None.
    """
    B, O = dy.shape
    Kin = ctx.x_shape[1]
    split, noisy, concat = ctx.split, ctx.noisy, ctx.concat
    sy, P, G = f32(ctx.sy), ctx.P, ctx.G
    wq, xa = ctx.wq, ctx.xa
    # ga = dL/d(analog accumulator), gd = dL/d(digital accumulator), both (B, O)
    ga = empty((B, O))
    if split:
        gs = empty((B, O))
        bad = K.scale_masked(dy, ctx.omask, f32(1) / sy, gs, False, n=gs.size)  # dL/d(yl + yd)
        K.scale_masked(gs, ctx.ymask, (f32(1) / f32(G)) if noisy else (sy / P), ga, False, n=ga.size)
        gd = gs / f32(G)
    else:
        bad = K.scale_masked(dy, ctx.ymask, (f32(1) / (f32(G) * sy)) if noisy else (f32(1) / P), ga, False,
                             n=ga.size)
        gd = None
    if bad:
        raise NonFiniteError(f"{ctx.owner}: dy contains {bad} NaN or inf value(s); expected finite numbers")

    dwa = ga.T @ xa  # (O, Ka)
    if noisy:
        dwa *= ctx.w_factor.T
    dwq = dwa[:, :Kin] - dwa[:, Kin:] if concat else dwa
    if split:
        dwq = dwq + gd.T @ (f32(256) * ctx.xd)

    dwq, db = bias_tail(ga.sum(axis=0, dtype=np.float32), dwq, ctx, shift=True)

    if split:  # dXl/dXq = 0: the input gradient flows through the digital part only
        dxa, cat = gd @ wq, False
    elif noisy:
        dxa, cat = ga @ ctx.wn.T, concat
    else:
        dxa, cat = ga @ wq, False
    dx = empty((B, Kin))
    K.input_grad(np.ascontiguousarray(dxa, dtype=np.float32), ctx.xmask, ctx.sx, cat, dx, n=dx.size)
    return dx, np.ascontiguousarray(dwq, dtype=np.float32), db


def bias_tail(colsum: np.ndarray, dwq: np.ndarray, ctx, shift: bool):
    """The straight-through backward through the bias codes (chip.md §7), shared by every array layer.

    colsum (O,) float32: Σ over rows of dL/d(analog accumulator); dwq (O, K) the weight codes' gradient.
    The bias rows add 128·Bq (noise: the noisy rows' factor), so dL/dBq = 128·colsum where the bias clamp
    passes; with Shift (and shift=True) the bias code holds -s·ΣWq/128, so dwq gets -dL/dBq·s/128; the float
    bias's gradient is dL/dBq·P/128 (Bq = R(b·P/128), P = sx·sw). Returns (dwq, db (O,) float32 or None)."""
    gba = colsum * (ctx.b_factor if ctx.noisy else f32(128))
    gba = np.where(ctx.bmask != 0, gba, f32(0)).astype(np.float32)  # dL/d(pre-clip bias code)
    if shift and ctx.s:
        dwq = dwq - (gba * f32(ctx.s / 128.0))[:, None]
    db = (gba * (ctx.P / f32(128))).astype(np.float32) if ctx.has_bias else None
    return dwq, db


def weight_grad_into(grad: np.ndarray, dwq: np.ndarray, ctx: ArrayCtx) -> None:
    """grad += dwq·sw where the weight's clamps pass (the chain through Wq = R(clip(clip(W)·sw)))."""
    K.scale_masked(dwq, ctx.wmask, f32(ctx.sw), grad, True, n=grad.size)  # the kernel casts c to float32 anyway: one signature
