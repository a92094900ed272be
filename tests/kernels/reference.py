"""Plain NumPy twins of the Numba kernels: obviously correct, slow, used by the tests.

Each function takes the same arguments as its kernel and writes the same outputs, computing whole arrays
at once in float32 so every product and quotient rounds as in the kernel (and as in the vendor's float32
reference).
"""
import numpy as np

__all__ = ["quantize_input", "quantize_weight", "quantize_bias", "requant", "combine_split", "input_grad", "scale_masked",
           "matmul_exact", "im2row", "row2im", "gelu", "gelu_grad"]

f32 = np.float32


def _split(q):
    d = np.floor(q * f32(1 / 256))
    return q - f32(256) * d, d


def quantize_input(x, sx, shift, lo, hi, pn, concat, split, xa, xd, mask):
    finite = np.isfinite(x)
    lo, hi = f32(lo), f32(hi)
    if pn:
        p = np.maximum(x, f32(0)) * f32(sx)
        n = np.maximum(-x, f32(0)) * f32(sx)
        qp = np.rint(np.clip(p, lo, hi))
        qn = np.rint(np.clip(n, lo, hi))
        mask[...] = np.where((x > 0) & (p <= hi), 1, np.where((x < 0) & (n <= hi), -1, 0))
        if split:
            (qp, dp), (qn, dn) = _split(qp), _split(qn)
            xd[...] = dp - dn
        xa[...] = np.concatenate([qp, qn], axis=1) if concat else qp - qn
    else:
        c = x * f32(sx) + f32(shift)
        q = np.rint(np.clip(c, lo, hi))
        mask[...] = (c >= lo) & (c <= hi)
        if split:
            q, d = _split(q)
            xd[...] = d
        xa[...] = q
    return int((~finite).sum())


def quantize_weight(w, wclip, sw, wq, mask):
    finite = np.isfinite(w)
    wc = f32(wclip)
    c = np.clip(w, -wc, wc) * f32(sw)
    wq[...] = np.rint(np.clip(c, f32(-128), f32(127)))
    mask[...] = (np.abs(w) <= wc) & (c >= -128) & (c <= 127)
    return int((~finite).sum())


def quantize_bias(b, wq, P, s, bias_d, N, split, ba, bmask, bd):
    P, c128 = f32(P), f32(128)
    corr = f32(s) * wq.sum(axis=1, dtype=np.float32) if s else f32(0)
    t = b * P
    if split:
        bd[...] = np.rint(bias_d * P / c128)
        pre = (np.rint(t / c128) * c128 - c128 * bd - corr) / c128
    else:
        pre = (t - corr) / c128
    lo, hi = f32(-128.0 * N), f32(127.0 * N)
    ba[...] = np.rint(np.clip(pre, lo, hi))
    bmask[...] = (pre >= lo) & (pre <= hi)


def requant(acc, neg, bias, div, mul, lo, hi, lo2, hi2, outdiv, y, mask, fl):
    u = (acc.astype(np.float64) + bias[None, :]).astype(np.float32) / f32(div)
    if neg.shape[0]:
        u = u + neg.astype(np.float32) / f32(div)
    v = u * f32(mul)
    q = (np.floor if fl else np.rint)(np.clip(v, f32(lo), f32(hi)))
    mask[...] = (v >= f32(lo)) & (v <= f32(hi)) & (q >= f32(lo2)) & (q <= f32(hi2))
    y[...] = np.clip(q, f32(lo2), f32(hi2)) / f32(outdiv)


def requant_nchw(acc, neg, bias, div, mul, lo, hi, lo2, hi2, outdiv, y, mask, fl):
    B, C, H, W = y.shape
    rows = np.empty(acc.shape, np.float32)
    requant(acc, neg, bias, div, mul, lo, hi, lo2, hi2, outdiv, rows, mask, fl)
    y[...] = rows.reshape(B, H, W, C).transpose(0, 3, 1, 2)


def combine_split(yl, accd, biasd, G, lo, hi, sy, y, mask, fl):
    yd = (np.floor if fl else np.rint)((accd.astype(np.float64) + biasd[None, :]).astype(np.float32) / f32(G))
    s = yl + yd
    mask[...] = (s >= f32(lo)) & (s <= f32(hi))
    y[...] = np.clip(s, f32(lo), f32(hi)) / f32(sy)


def input_grad(dxa, mask, sx, concat, dx):
    K = dx.shape[1]
    if concat:
        dx[...] = np.where(mask > 0, dxa[:, :K] * f32(sx), np.where(mask < 0, -(dxa[:, K:] * f32(sx)), f32(0)))
    else:
        dx[...] = np.where(mask != 0, dxa * f32(sx), f32(0))
    return dx


def input_grad_nhwc(dpos, dneg, mask, sx, dx):
    B, C, H, W = dx.shape
    n = dx.size
    pn = dneg.shape[0] > 0
    parts = [dpos.transpose(0, 3, 1, 2).reshape(1, n)] + ([dneg.transpose(0, 3, 1, 2).reshape(1, n)] if pn else [])
    out = np.empty((1, n), np.float32)
    input_grad(np.concatenate(parts, axis=1), mask.reshape(1, n), sx, pn, out)
    dx[...] = out.reshape(dx.shape)


def scale_masked(src, mask, c, out, accumulate):
    v = np.where(mask != 0, src * f32(c), f32(0))
    if accumulate:
        out += v
    else:
        out[...] = v
    return int((~np.isfinite(src)).sum())


def _padded(B, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, fill, dtype):
    return np.full((B, max(H + 2 * ph, dh * (kh - 1) + sh * (Ho - 1) + 1),
                    max(W + 2 * pw, dw * (kw - 1) + sw * (Wo - 1) + 1), C), fill, dtype)


def _rows7(rows, B, Ho, Wo, groups, kh, kw, cg, jfirst):
    shape = (B, Ho, Wo, groups) + ((kw, kh) if jfirst else (kh, kw)) + (cg,)
    return rows.reshape(shape)


def im2row(x, kh, kw, sh, sw, ph, pw, dh, dw, Wo, groups, jfirst, pad, rows):
    B, H, W, C = x.shape
    Ho = rows.shape[0] // (B * Wo)
    cg = C // groups
    xp = _padded(B, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, pad, np.float32)
    xp[:, ph:ph + H, pw:pw + W] = x
    r7 = _rows7(rows, B, Ho, Wo, groups, kh, kw, cg, jfirst)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
            patch = patch.reshape(B, Ho, Wo, groups, cg)
            if jfirst:
                r7[:, :, :, :, j, i] = patch
            else:
                r7[:, :, :, :, i, j] = patch
    return rows


def row2im(rows, kh, kw, sh, sw, ph, pw, dh, dw, Wo, groups, jfirst, out):
    B, H, W, C = out.shape
    Ho = rows.shape[0] // (B * Wo)
    cg = C // groups
    xp = _padded(B, H, W, C, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, 0, out.dtype)
    r7 = _rows7(rows, B, Ho, Wo, groups, kh, kw, cg, jfirst)
    for i in range(kh):
        for j in range(kw):
            part = r7[:, :, :, :, j, i] if jfirst else r7[:, :, :, :, i, j]
            xp[:, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw] += part.reshape(
                B, Ho, Wo, C)
    out[...] = xp[:, ph:ph + H, pw:pw + W]
    return out


def gelu(x, out):
    import math
    v = x.astype(np.float64)
    out[...] = (0.5 * v * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))).astype(np.float32)
    return out


def gelu_grad(x, out):
    import math
    v = x.astype(np.float64)
    out[...] = (0.5 * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0)))
                + v * np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)).astype(np.float32)
    return out


def matmul_exact(a, b):
    """Integer-exact a @ b of integer-valued float arrays, in int64 (the definition `gemm` must meet)."""
    return a.astype(np.int64) @ b.astype(np.int64)


def quantize_nhwc(x, sx, shift, lo, hi, pn, xp, xn, pp, pnp, top, left, fill, mask):
    B, C, H, W = x.shape
    n = x.size
    xa = np.empty((1, 2 * n if pn else n), np.float32)
    m = np.empty((1, n), np.int8)
    bad = quantize_input(x.reshape(1, n), sx, shift, lo, hi, pn, pn, False, xa, np.empty((0, 0), np.float32), m)
    mask[...] = m.reshape(x.shape)
    for k, (u, p, f) in enumerate(((xp, pp, fill), (xn, pnp, 0.0))):
        if k == 1 and not pn:
            break
        codes = xa[0, k * n:(k + 1) * n].reshape(x.shape).transpose(0, 2, 3, 1)
        if u.shape[0]:
            u[...] = codes
        if p.shape[0]:
            p[...] = f
            p[:, top:top + H, left:left + W] = codes
    return bad
