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
