"""Naive NumPy convolutions (loops over kernel offsets, float64) and a transcription of chip.md §4 on top.

Independent of witnp's im2col/col2im kernels: the float references are the textbook definitions; the
quantized one quantizes exactly as chip.md §4 says and convolves the integer codes in float64 (exact).
"""
import numpy as np

f32 = np.float32


def conv2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, pad_value=0.0):
    """torch.nn.functional.conv2d in float64. x (B, C, H, W), w (O, C/g, kh, kw)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    B, C, H, W = x.shape
    O, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.full((B, C, H + 2 * ph, W + 2 * pw), pad_value)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((B, O, Ho, Wo))
    og = O // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (Wo - 1) + 1:sw]
                y[:, g * og:(g + 1) * og] += np.einsum("bchw,oc->bohw", patch, w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv_transpose2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                         groups=1):
    """torch.nn.functional.conv_transpose2d in float64 (scatter form). x (B, Ci, H, W), w (Ci, Co/g, kh, kw)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    B, Ci, H, W = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((B, cog * groups, Ho + 2 * ph + sh + dh * kh, Wo + 2 * pw + sw + dw * kw))
    cig = Ci // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("bchw,co->bohw", x[:, g * cig:(g + 1) * cig], w[g * cig:(g + 1) * cig, :, i, j])
                full[:, g * cog:(g + 1) * cog, i * dh:i * dh + sh * (H - 1) + 1:sh,
                     j * dw:j * dw + sw * (W - 1) + 1:sw] += contrib
    y = full[:, :, ph:ph + Ho, pw:pw + Wo]
    if b is not None:
        y = y + np.asarray(b, np.float64)[None, :, None, None]
    return y


def spec_qconv(x, W, b, *, sx, sw, sy, xb=8, yb=8, N=8, neg="FALSE", shift_num=1.0, transposed=False, geo=None):
    """chip.md §4 (to_linear off, noise off): y of Conv2d / ConvTranspose2d in float32."""
    geo = dict(geo or {})
    R = np.rint
    P = f32(sx * sw)
    Wq = R(np.clip((W * f32(sw)).astype(f32), -128, 127))
    Wneg = R(np.clip((-W * f32(sw)).astype(f32), -128, 127))
    co = W.shape[1] * geo.get("groups", 1) if transposed else W.shape[0]
    s = float(R(f32(min(shift_num * sx, 2.0 ** xb)))) if neg == "Shift" else 0.0
    bq_pre = (b * P).astype(f32) if b is not None else np.zeros(co, f32)
    if s:
        bq_pre = (bq_pre - f32(s) * Wq.reshape(co, -1).sum(1)).astype(f32)
    Bq = R(np.clip(bq_pre / f32(128), -128 * N, 127 * N))

    def conv(codes, w, pad=0.0):
        if transposed:
            return conv_transpose2d_ref(codes, w, **geo)
        return conv2d_ref(codes, w, pad_value=pad, **{k: v for k, v in geo.items() if k != "output_padding"})

    bias = (128 * Bq.astype(np.float64))[None, :, None, None]
    hi_u = 2 ** xb - 1
    if neg == "PN":
        xp = R(np.clip((np.maximum(x, 0) * f32(sx)).astype(f32), 0, hi_u))
        xn = R(np.clip((np.maximum(-x, 0) * f32(sx)).astype(f32), 0, hi_u))
        pos = conv(xp, Wq) + bias
        negv = conv(xn, Wneg)
        v = (pos.astype(f32) / P + negv.astype(f32) / P) * f32(sy)
    else:
        if neg == "FALSE" and not transposed:
            xq = R(np.clip((x * f32(sx)).astype(f32), -2 ** (xb - 1), 2 ** (xb - 1) - 1))
            pad = 0.0
        else:
            xq = R(np.clip((x * f32(sx) + f32(s)).astype(f32), 0, hi_u))
            pad = float(min(s, hi_u))
        v = ((conv(xq, Wq, pad) + bias).astype(f32) / P) * f32(sy)
    y = R(np.clip(v, -2 ** (yb - 1), 2 ** (yb - 1) - 1))
    if neg == "PN" and not transposed:
        y = np.clip(y, -128, 127)
    return (y / f32(sy)).astype(f32)


def _patch_grads(xp, w, g, stride, dilation, groups):
    """Adjoints of conv2d_ref's product: for y = conv(xp, w) (xp already padded), given g = dL/dy, returns
    (dL/dxp, dL/dw), float64, by the same loop over kernel offsets."""
    B, C, Hp, Wp = xp.shape
    O, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    Ho, Wo = g.shape[2:]
    dxp, dwt = np.zeros_like(xp), np.zeros_like(w)
    og = O // groups
    for k in range(groups):
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw)
                gk = g[:, k * og:(k + 1) * og]
                dwt[k * og:(k + 1) * og, :, i, j] = np.einsum("bohw,bchw->oc", gk, xp[:, k * cg:(k + 1) * cg, rows, cols])
                dxp[:, k * cg:(k + 1) * cg, rows, cols] += np.einsum("bohw,oc->bchw", gk, w[k * og:(k + 1) * og, :, i, j])
    return dxp, dwt


def spec_qconv2d_grads(x, W, b, dy, *, sx, sw, sy, xb=8, yb=8, N=8, neg="FALSE", shift_num=1.0, geo=None):
    """chip.md §7 for the quantized Conv2d (to_linear off, noise off), formula by formula, in float64:
    R straight through, every clip a clamp with gradient 1 on its closed interval. Returns (dx, dW, db)."""
    geo = dict(geo or {})
    stride, padding = geo.get("stride", (1, 1)), geo.get("padding", (0, 0))
    dilation, groups = geo.get("dilation", (1, 1)), geo.get("groups", 1)
    R = np.rint
    P = f32(sx * sw)
    co = W.shape[0]
    wv = (W * f32(sw)).astype(f32)
    Wq, mw = R(np.clip(wv, -128, 127)), (wv >= -128) & (wv <= 127)
    wn = (-W * f32(sw)).astype(f32)
    Wneg, mwn = R(np.clip(wn, -128, 127)), (wn >= -128) & (wn <= 127)
    s = float(R(f32(min(shift_num * sx, 2.0 ** xb)))) if neg == "Shift" else 0.0
    pre = (b * P).astype(f32) if b is not None else np.zeros(co, f32)
    if s:
        pre = (pre - f32(s) * Wq.reshape(co, -1).sum(1)).astype(f32)
    bpre = pre / f32(128)
    Bq, mb = R(np.clip(bpre, -128 * N, 127 * N)), (bpre >= -128 * N) & (bpre <= 127 * N)
    (ph, pw), B, C, H, Wd = padding, *x.shape

    def padded(a, fill):
        out = np.full((B, C, H + 2 * ph, Wd + 2 * pw), fill, np.float64)
        out[:, :, ph:ph + H, pw:pw + Wd] = a
        return out

    bias = (128 * Bq.astype(np.float64))[None, :, None, None]
    conv = lambda a, w: conv2d_ref(a, w, stride=stride, dilation=dilation, groups=groups)  # noqa: E731
    hi_u = 2 ** xb - 1
    if neg == "PN":
        up, un = (np.maximum(x, 0) * f32(sx)).astype(f32), (np.maximum(-x, 0) * f32(sx)).astype(f32)
        xp, mp = R(np.clip(up, 0, hi_u)), (up <= hi_u) & (x > 0)     # relu'(0) = 0
        xn, mn = R(np.clip(un, 0, hi_u)), (un <= hi_u) & (x < 0)
        pos, negv = conv(padded(xp, 0), Wq) + bias, conv(padded(xn, 0), Wneg)
        v = (pos.astype(f32) / P + negv.astype(f32) / P) * f32(sy)
    else:
        signed = neg == "FALSE"
        u = (x * f32(sx) + f32(s)).astype(f32)
        lo, hi = (-2 ** (xb - 1), 2 ** (xb - 1) - 1) if signed else (0, hi_u)
        xq, mx = R(np.clip(u, lo, hi)), (u >= lo) & (u <= hi)
        pad = 0.0 if signed else float(min(s, hi_u))
        v = ((conv(padded(xq, pad), Wq) + bias).astype(f32) / P) * f32(sy)
    ylo, yhi = -2 ** (yb - 1), 2 ** (yb - 1) - 1
    q = R(np.clip(v, ylo, yhi))
    mo = (v >= ylo) & (v <= yhi)
    if neg == "PN":
        mo &= (q >= -128) & (q <= 127)                              # the int8 clip after the rounding
    gacc = dy.astype(np.float64) * mo / P                            # dL/d(accumulator): y = v/sy, v = acc·sy/P
    gbq = 128 * gacc.sum(axis=(0, 2, 3)) * mb                       # dL/dBq (the bias rows add 128·Bq), clamp
    db = gbq * float(P) / 128 if b is not None else None            # Bq = R(b·P/128 ...)
    if neg == "PN":
        dxp, dwq = _patch_grads(padded(xp, 0), Wq, gacc, stride, dilation, groups)
        dxn, dwneg = _patch_grads(padded(xn, 0), Wneg, gacc, stride, dilation, groups)
        dW = dwq * sw * mw - dwneg * sw * mwn                        # Wneg = R(clip(-W·sw)): d/dW = -sw
        crop = (slice(None), slice(None), slice(ph, ph + H), slice(pw, pw + Wd))
        dx = (dxp[crop] * mp - dxn[crop] * mn) * float(sx)
    else:
        dxq, dwq = _patch_grads(padded(xq, pad), Wq, gacc, stride, dilation, groups)
        if s:                                                        # Shift: Bq holds -s·ΣWq/128
            dwq = dwq - (gbq * s / 128)[:, None, None, None]
        dW = dwq * sw * mw
        dx = dxq[:, :, ph:ph + H, pw:pw + Wd] * mx * float(sx)
    return dx, dW, db
