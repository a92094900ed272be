"""Channels-first direct convolution on "wide" planes: the stride-1 Conv2d path (forward, input and weight
gradients) without any NHWC transpose.

A wide plane holds one (image, channel) of an NCHW tensor as rows of S values (S >= the padded width),
inside a flat float32 buffer: plane i starts at m0 + i·ld. Output pixel (h, w) of a stride-1 convolution
sits at l = h·S + w of its output plane and reads input tap (i, j) at l + i·dh·S + j·dw of the input plane:
one constant offset per tap over the whole plane. So a plane is computed as one flat run of l (columns
w >= Wo are computed too and dropped; 1-7% more work here) in vectors of LANES pixels, with the output
channels as the tile's rows and the weights broadcast (`tile_fma_tab`). The 16-channel input gradient no
longer runs as a narrow product, and the transposes around the products disappear.
The weight gradient is dot products over the pixels (`dot_fma`); the output gradient plane is zero outside
the image, so the border columns add nothing.

Reads beyond a plane land in the next plane or in the buffer's margins: the callers size the buffers so
every read is in bounds and finite (`witnp.array.conv.wide`). Outputs are written whole; nothing is read before
it is written. The quantized layer runs the fused kernels of `wide_fused`, built on `conv_image`,
`_grad_plane` and `dot_fma`; `to_wide`, `grad_to_wide` and `wide_dw` are the unfused passes the tests
check those against (`wide_conv` and `from_wide` also serve the auto-scale statistics).
"""
import numpy as np
from numba import prange

from .._jit import jit, kernel
from ..simd.dot_tile import DC, DR, dot_fma
from ..layout import _fill
from ..simd.tile import _MAX2, LANES, _rows_next, tile_fma_tab

__all__ = ["wide_conv", "wide_dw", "to_wide", "from_wide", "grad_to_wide"]


@jit
def conv_image(X, x0, boff, A, aoff, out, o0, geo):
    """One image of `wide_conv`, geo = (ldx, xg, ag, ps, si, nk, groups, nrows, ldo, L) (a tuple: free in
    Numba): for group g, row p < nrows, pixel l < L (a multiple of 2·LANES):
        out[o0 + (g·nrows + p)·ldo + l] = Σ_t Σ_{k < nk} A[g·ag + p·ps + aoff[t] + k·si]
                                                      · X[x0 + g·xg + boff[t] + k·ldx + l]
    An empty tap table (a ConvTranspose2d phase that no tap reaches) writes zeros."""
    ldx, xg, ag, ps, si, nk, groups, nrows, ldo, L = geo
    T = boff.shape[0]
    if T == 0:
        for r in range(groups * nrows):
            _fill(out, o0 + r * ldo, L, out.dtype.type(0))
        return
    for g in range(groups):
        for l in range(0, L, 2 * LANES):
            p = 0
            while p < nrows:
                mr = _rows_next(nrows - p, _MAX2)
                tile_fma_tab(mr, A, g * ag + p * ps, ps, (aoff, T, si, nk), X, x0 + g * xg + l, boff, ldx, out,
                             o0 + (g * nrows + p) * ldo + l, ldo, False)
                p += mr


@kernel(raw=True)
def wide_conv(X, boff, A, aoff, out, dims):
    """For image b < nimg, group g, row p < nrows, pixel l < L (a multiple of 2·LANES):
        out[b·oimg + (g·nrows + p)·ldo + l] = Σ_t Σ_{k < nk} A[g·ag + p·ps + aoff[t] + k·si]
                                                          · X[x0 + b·ximg + g·xg + boff[t] + k·ldx + l]
    X, A, out: flat float32; boff, aoff (T,) int64. dims (14,) int64: x0, ximg, ldx, xg, ag, ps, si, nk, groups,
    nrows, oimg, ldo, L, nimg. Each image's output planes are written in its iteration only (prange-safe)."""
    x0, ximg, ldx, xg, ag, ps, si = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6]
    nk, groups, nrows, oimg, ldo, L, nimg = dims[7], dims[8], dims[9], dims[10], dims[11], dims[12], dims[13]
    for b in prange(nimg):
        conv_image(X, x0 + b * ximg, boff, A, aoff, out, b * oimg, (ldx, xg, ag, ps, si, nk, groups, nrows, ldo, L))
    return out


@kernel(raw=True)
def wide_dw(Gm, gimg, ldg, gs, nk, X, ximg, xg, xo, groups, ogp, nimg, out):
    """out[g·ogp + p, q] = Σ_b Σ_{k < nk·LANES} Gm[b·gimg + (g·ogp + p)·ldg + gs + k]
                                               · X[b·ximg + g·xg + xo[q] + gs + k]
    Gm, X: flat float32; xo (Qp,) int64 with Qp a multiple of DC; ogp a multiple of DR; out (groups·ogp, Qp)
    float32. The sum over images runs in image order (serial); tiles of one image are independent."""
    Qp = xo.shape[0]
    of = out.reshape(out.size)
    z = np.zeros(1, np.int64)
    nrb = ogp // DR
    for b in range(nimg):
        for i in prange(groups * nrb):
            g, p = i // nrb, (i % nrb) * DR
            for q in range(0, Qp, DC):
                dot_fma(Gm, b * gimg + (g * ogp + p) * ldg + gs, ldg, z, X, b * ximg + g * xg + gs, z, xo, q, 1, nk,
                        of, (g * ogp + p) * Qp + q, Qp, b > 0)
    return out


# The element loops below index with unsigned integers: with a signed flat index Numba keeps its
# negative-index wraparound test in the loop and LLVM leaves it scalar (see `layout`). Run-time choices
# (mask or none, PN or not) are taken outside the loops for the same reason.

@jit
def _copy(dst, d0, src, s0, n):
    d, s = np.uint64(d0), np.uint64(s0)
    for i in range(n):
        dst[d + np.uint64(i)] = src[s + np.uint64(i)]


@kernel(raw=True)
def to_wide(x, out, m0, ld, S, top, left, fill):
    """x (B, C, H, W) -> wide planes: x[b, c, h, w] at out[m0 + (b·C + c)·ld + (top + h)·S + left + w],
    `fill` everywhere else in out (margins, padding, row ends), so out is written whole."""
    B, C, H, W = x.shape
    xf = x.reshape(x.size)
    fill = out.dtype.type(fill)
    n = B * C
    _fill(out, np.int64(0), m0, fill)  # np.int64: one _fill for every caller
    _fill(out, m0 + n * ld, out.size - m0 - n * ld, fill)
    for pl in prange(n):
        o0 = m0 + pl * ld
        _fill(out, o0, top * S + left, fill)
        for h in range(H):
            r = o0 + (top + h) * S + left
            _copy(out, r, xf, (pl * H + h) * W, W)
            _fill(out, r + W, ((top + h + 1) * S + left if h < H - 1 else ld) - (r + W - o0), fill)
    return out


@kernel(raw=True)
def from_wide(src, m0, ld, S, bias, out):
    """out (B, C, H, W) = the wide planes' first H rows and W columns: out[b, c, h, w] =
    src[m0 + (b·C + c)·ld + h·S + w] (+ bias[c] when bias has C entries, else nothing added)."""
    B, C, H, W = out.shape
    of = out.reshape(out.size)
    has_bias = bias.shape[0] == C
    for pl in prange(B * C):
        bc = bias[pl % C] if has_bias else np.float32(0)
        for h in range(H):
            s0, d0 = np.uint64(m0 + pl * ld + h * S), np.uint64((pl * H + h) * W)
            for w in range(W):
                of[d0 + np.uint64(w)] = src[s0 + np.uint64(w)] + bc
    return out


@jit
def _grad_plane(gf, mf, has_mask, c, out, o0, geo, s_img, chsum, b, o):
    """One plane of `grad_to_wide` (source g[b, o] from gf[s_img]), geo = (ld, S, top, left, Ho, Wo); returns
    its non-finite count."""
    ld, S, top, left, Ho, Wo = geo
    zero = np.float32(0)
    _fill(out, o0, top * S + left, zero)
    cols = np.zeros(Wo, np.float32)  # column sums: a sum along w would be a serial chain
    nb = 0
    for h in range(Ho):
        d = o0 + (top + h) * S + left
        s0, du = np.uint64(s_img + h * Wo), np.uint64(d)
        if has_mask:
            for w in range(Wo):
                v = gf[s0 + np.uint64(w)]
                nb += 0 if abs(v) < np.inf else 1
                v = v * c if mf[s0 + np.uint64(w)] != 0 else zero
                out[du + np.uint64(w)] = v
                cols[w] += v
        else:
            for w in range(Wo):
                v = gf[s0 + np.uint64(w)]
                nb += 0 if abs(v) < np.inf else 1
                v = v * c
                out[du + np.uint64(w)] = v
                cols[w] += v
        _fill(out, d + Wo, (S if h < Ho - 1 else o0 + ld - d) - Wo, zero)
    chsum[b, o] = cols.sum()
    return nb


@kernel(raw=True)
def grad_to_wide(g, mask, c, out, ld, S, top, left, groups, ogp, chsum):
    """Output gradient g (B, O, Ho, Wo) -> wide planes for the products, zero outside the image:
        out[(b·groups + o // og)·ogp + o % og) plane, row top + h, column left + w] = g[b, o, h, w]·c
    (0 where mask[b, o, h, w] == 0; mask uint8 (B, O, Ho, Wo), or empty for none), og = O // groups,
    planes are ld long from out[0]; planes o % og >= og of a group (padding up to ogp) are all zero.
    chsum (B, O) float32 out: the sums of each output plane (the bias gradient, summed over B by the caller).
    Returns the number of non-finite values in g."""
    B, O, Ho, Wo = g.shape
    og = O // groups
    gf = g.reshape(g.size)
    mf = mask.reshape(mask.size)
    has_mask = mf.shape[0] > 0
    c = np.float32(c)
    zero = np.float32(0)
    bad = 0
    for pl in prange(B * groups * ogp):
        b, r = pl // (groups * ogp), pl % (groups * ogp)
        o0 = pl * ld
        if r % ogp >= og:  # (an if/else, not `continue`: Numba's parfor lowering rejects it with the reduction)
            _fill(out, o0, ld, zero)
        else:
            o = (r // ogp) * og + r % ogp
            bad += _grad_plane(gf, mf, has_mask, c, out, o0, (ld, S, top, left, Ho, Wo), (b * O + o) * Ho * Wo, chsum,
                               b, o)
    return bad
