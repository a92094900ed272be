"""Quantized Conv2d / ConvTranspose2d on the array (chip.md §4, §6, §7), to_linear off.

(Conv2d with to_linear on is Linear on unfolded patches and goes through `witnp.array.matrix`.)

Forward, noise off, in the vendor's float32 order:
    Conv2d FALSE:  Xq = R(clip(x·sx, Y(xb))) (signed, no split, bias_d ignored)
    Conv2d Shift:  Xq = R(clip(x·sx + s, U(xb))) on the zero-padded float input (padding holds the code of 0);
                   the bias absorbs s·ΣWq over (ci, kh, kw)
    PN:            Xp, Xn = R(clip(relu(±x)·sx, U(xb))); the negative branch uses Wneg = R(clip(-W·sw)), not -Wq
    ConvT FALSE:   Xq = R(clip(x·sx, U(xb)))
    pos = conv(Xq|Xp, Wq), neg = conv(Xn, Wneg);  v = (f32(pos + 128·Bq)/f32(sx·sw) + f32(neg)/f32(sx·sw))·sy
    y = clip(R(clip(v, Y(yb))), lo2, hi2) / sy with (lo2, hi2) = int8 for Conv2d PN, Y(yb) otherwise.
Noise (level > 0): E1 on Wq in the weight tensor's shape, E2 (N, Co) on the bias rows, E3 on Wneg (PN);
    the divisions by sx·sw and the multiplication by sy become one division by G.
"""
from __future__ import annotations


import numpy as np

from ... import kernels as K
from .layouts import pick_layout
from ..ctx import ConvCtx
from ..matrix import amax, bias_operand, bias_tail, checked_gain, noisy_bias, weight_codes
from ...quant import WEIGHT_RANGE, code_range, shift_offset
from ...errors import NonFiniteError

__all__ = ["qconv_forward", "qconv_backward"]

f32 = np.float32


def qconv_forward(owner, x, W, b, cfg, sx, sw, sy, geo, transposed, co, *, noise=None, rng=None,
                  want_stats=False):
    """x (B, C, H, W) float32; W the weight tensor (Conv2d (Co, Ci/g, kh, kw), ConvT (Ci, Co/g, kh, kw));
    b (Co,) or None. Returns y (B, Co, Ho, Wo) float32, ctx, stats (or None). Quantizes in x's NCHW order
    (xmask and dx share it) and multiplies in the layout `layouts.pick_layout` chooses."""
    xb, yb = cfg.x_quant_bits, cfg.y_quant_bits
    mode = cfg.handle_neg_in
    pn = mode == "PN"
    noisy = noise is not None and noise.active
    G = checked_gain(owner, sx, sw, sy, "noisy forward") if noisy else None
    ylo, yhi = code_range(yb)
    lo2, hi2 = WEIGHT_RANGE if (pn and not transposed) else (ylo, yhi)
    # the input codes' range
    s = shift_offset(cfg.shift_num, sx, xb) if mode == "Shift" else 0.0
    xlo, xhi = code_range(xb, signed=mode == "FALSE" and not transposed)
    pad = float(np.rint(min(max(s, xlo), xhi)))  # the code of a zero input (padding)
    # the layout is picked for the integer codes' bound, as the noiseless statistics below multiply them too
    lay = pick_layout(geo, transposed, x.shape, co, (max(abs(xlo), xhi), 128))
    bound = None if noisy else (max(abs(xlo), xhi), 128)
    # codes in the layout's order (Conv2d's already padded), shared by the forward and the weight gradient
    xq, xn, xmask, bad = lay.quantize(x, sx, s, xlo, xhi, pn, pad)
    if bad:
        raise NonFiniteError(f"{owner}: x contains NaN or inf value(s); expected finite numbers")
    # weight and bias codes, in the product's layout
    perm = lay.perm
    w2 = perm(W)
    wq, wmask = weight_codes(owner, w2, cfg, sw)
    wneg, wnmask = weight_codes(owner, np.ascontiguousarray(-w2), cfg, sw) if pn else (None, None)
    P = f32(sx * sw)
    ba = np.empty(co, np.float32)
    bmask = np.empty(co, np.uint8)
    bvec = b if b is not None else np.zeros(co, np.float32)
    K.quantize_bias(bvec, wq if not transposed else np.empty((co, 0), np.float32), P, s,
                    np.zeros(co, np.float32), cfg.bias_row_N, False, ba, bmask, np.zeros(co, np.float32))
    ctx = ConvCtx(owner=owner, transposed=transposed, layout=lay, x_shape=x.shape, w_shape=W.shape, co=co, wq=wq,
                  wmask=wmask, wneg=wneg, wnmask=wnmask, xq=xq, xn=xn, xmask=xmask, bmask=bmask, pn=pn,
                  noisy=noisy, s=s, sx=sx, sw=sw, sy=sy, P=P, G=G, has_bias=b is not None, pad=pad)
    wa, wna = wq, wneg
    if noisy:  # draws in the weight tensor's shape, permuted like the weight (chip.md §6: E1, E2, E3)
        e1 = perm(noise.draw(rng, W.shape))
        wa = noise.apply(wq, e1)
        bias_term, b_factor = noisy_bias(noise, rng, ba, cfg.bias_row_N)
        ctx.wa, ctx.w_factor, ctx.b_factor = wa, noise.derivative(wq, e1), b_factor
        if pn:
            e3 = perm(noise.draw(rng, W.shape))
            wna = noise.apply(wneg, e3)
            ctx.wna, ctx.wn_factor = wna, noise.derivative(wneg, e3)
        div, mul = f32(G), f32(1)
    else:
        bias_term = 128.0 * ba.astype(np.float64)
        div, mul = P, f32(sy)
    y, ctx.ymask = lay.forward(xq, xn, wa, wna, pad, bound, bias_operand(bias_term), div, mul, ylo, yhi, lo2, hi2, sy,
                               cfg.rounding == "floor")  # floor: the mapper from 0.8.8 on
    stats = None
    if want_stats:  # max|x|, max|W| (raw) and max|u| of the noiseless accumulator, u = pos/P + neg/P
        # (the fused forwards keep no accumulators, so they are made again here: only in the first
        # auto_scale_update_step training forwards of an epoch, 2 by default)
        pos, neg = _accumulate(lay, xq, xn, wq, wneg, pad, (max(abs(xlo), xhi), 128))
        bias = 128.0 * ba.astype(np.float64)[:, None, None]
        u = (lay.nchw(pos) + bias).astype(np.float32) / P
        if neg is not None:
            u = u + lay.nchw(neg).astype(np.float32) / P
        stats = {"x": amax(x), "weight": amax(W), "y": amax(u)}
    return y, ctx, stats


def _accumulate(lay, xq, xn, wa, wna, pad, bound):
    """pos and neg accumulators, in the layout's order."""
    pos = lay.products(xq, wa, pad, bound)
    neg = lay.products(xn, wna, 0.0, bound) if xn is not None else None
    return pos, neg


def qconv_backward(dy, ctx):
    """Straight-through backward of `qconv_forward`. dy (B, Co, Ho, Wo) float32.

    Returns dx (B, C, H, W), dW in the weight tensor's layout (already ·sw and clamp-masked), db (Co,) or None.
    """
    noisy, pn, transposed, lay = ctx.noisy, ctx.pn, ctx.transposed, ctx.layout
    P, G, sy = ctx.P, ctx.G, f32(ctx.sy)
    # dy through the output clip, the per-channel sums of that (the bias gradient), dW and dx
    dwq, dwn, dx, sums, bad = lay.backward_all(dy, ctx.ymask, (f32(1) / (f32(G) * sy)) if noisy else (f32(1) / P),
                                               ctx.xq, ctx.xn, ctx.pad, ctx.wa if ctx.wa is not None else ctx.wq,
                                               ctx.wna if ctx.wna is not None else ctx.wneg, ctx.xmask, ctx.sx)
    if bad:
        raise NonFiniteError(f"{ctx.owner}: dy contains NaN or inf value(s); expected finite numbers")
    if noisy:
        dwq = dwq * ctx.w_factor
    dwq, db = bias_tail(sums, dwq, ctx, shift=not transposed)
    dW = np.zeros(dwq.shape, np.float32)
    K.scale_masked(np.ascontiguousarray(dwq, dtype=np.float32), ctx.wmask, f32(ctx.sw), dW, True, n=dW.size)
    if pn:
        if noisy:
            dwn = dwn * ctx.wn_factor
        K.scale_masked(np.ascontiguousarray(dwn, dtype=np.float32), ctx.wnmask, f32(-ctx.sw), dW, True,
                       n=dW.size)  # Wneg = R(clip(-W·sw)): d/dW = -sw
    return dx, lay.unperm(dW, ctx.w_shape), db
