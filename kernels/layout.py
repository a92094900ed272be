"""Layout changes between torch's NCHW and the channels-last NHWC the convolution kernels run on.

NumPy's strided copy of a (B, C, H, W) <-> (B, H, W, C) transpose ran at ~3 GB/s here (1.4 ms for a
B32 x 32ch x 32x32 tensor); these loops keep one image in cache and run several times faster. Padding is
fused into the NCHW -> NHWC copy because every direct convolution wants a padded input.
Each prange iteration writes one (image, row) of the output only.

`nchw_to_nhwc_f32`, for C-contiguous float32 (the conv inputs and output gradients), moves 8 x 8 blocks
through registers (`_t8x8`, LLVM IR shuffles: 8 vector loads along w, 8 vector stores along c), where the scalar
loop reads one element per channel row. Measured on one core, as the conv layers call it (medians, three
alternating runs): 0.26 ms against 0.43 for B32 16ch 32x32 with padding 1, 0.63 against 0.74 for B32 32ch
32x32, 0.039 against 0.075 for the vendor demo's B10 10ch 30x30. The same blocks made NHWC -> NCHW slower
at 16 channels (0.35 ms against 0.28: its scalar loop already writes whole rows), so
that direction keeps its loop. `grad_to_nhwc` adds the quantized backward's output mask, scale and bias sums
to the blocked transpose; `pad_nhwc` pads channels-last data by whole rows.

Flat loops that start at an offset index with unsigned integers: with a signed index Numba keeps its
negative-index wraparound test in the loop, and LLVM then leaves the loop scalar (measured: 10x).
"""
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from ._jit import jit, kernel
from .simd.raw import require_contiguous
from .simd.tile import _OFF0, LANES, tile_fma

__all__ = ["nchw_to_nhwc", "nchw_to_nhwc_f32", "grad_to_nhwc", "nhwc_to_nchw", "pad_nhwc"]

_ONE = np.ones(1, np.float32)  # the A operand of a column sum through the tile

# shufflevector masks of the 8 x 8 transpose network (LLVM lowers them to unpack, shuffle and 128-bit
# permutes): interleave pairs of rows, then pairs of pairs, then the two 128-bit halves
_S1 = ((0, 8, 1, 9, 4, 12, 5, 13), (2, 10, 3, 11, 6, 14, 7, 15))
_S2 = ((0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15))
_S3 = ((0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15))


@intrinsic
def _t8x8(typingctx, src, s0, lds, dst, d0, ldd):
    """dst[d0 + j·ldd + i] = src[s0 + i·lds + j] for i, j < 8: an 8 x 8 block, transposed (1-D float32
    arrays; the caller keeps every index in bounds)."""
    require_contiguous("transpose_blocks", src, dst)
    if any(getattr(t, "dtype", None) != types.float32 or t.ndim != 1 for t in (src, dst)):
        return None
    sig = types.void(src, s0, lds, dst, d0, ldd)

    def codegen(context, builder, signature, args):
        tys = signature.args
        sp = context.make_array(tys[0])(context, builder, args[0]).data
        dp = context.make_array(tys[3])(context, builder, args[3]).data
        s0_, lds_, d0_, ldd_ = (context.cast(builder, args[i], tys[i], types.int64) for i in (1, 2, 4, 5))
        i64, vt = ir.IntType(64), ir.VectorType(ir.FloatType(), 8)

        def row(p, base, ld, i):
            return builder.bitcast(builder.gep(p, [builder.add(base, builder.mul(ld, ir.Constant(i64, i)))]),
                                   vt.as_pointer())

        def shuf(a, b, m):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), list(m)))

        r = [builder.load(row(sp, s0_, lds_, i), align=4) for i in range(8)]
        t = [shuf(r[i], r[i + 1], m) for i in range(0, 8, 2) for m in _S1]
        u = [shuf(t[a], t[a + 2], m) for a in (0, 1, 4, 5) for m in _S2]
        o = [shuf(u[j], u[j + 4], m) for m in _S3 for j in range(4)]
        for j in range(8):
            builder.store(o[j], row(dp, d0_, ldd_, j), align=4)
        return context.get_dummy_value()

    return sig, codegen


@kernel(raw=True)
def nchw_to_nhwc(x, top, left, fill, out):
    """x (B, C, H, W) -> out (B, Hp, Wp, C): x[b, :, h, w] at out[b, top + h, left + w, :], `fill` elsewhere.
    Any dtype and layout (a strided view, say): element by element."""
    B, C, H, W = x.shape
    Hp, Wp = out.shape[1], out.shape[2]
    fill = out.dtype.type(fill)
    for bh in prange(B * Hp):
        b = bh // Hp
        hp = bh % Hp
        h = hp - top
        for wp in range(Wp):
            w = wp - left
            if h < 0 or h >= H or w < 0 or w >= W:
                for c in range(C):
                    out[b, hp, wp, c] = fill
            else:
                for c in range(C):
                    out[b, hp, wp, c] = x[b, c, h, w]
    return out


@jit
def _fill(of, o0, n, v):
    """of[o0:o0 + n] = v (1-D)."""
    u0 = np.uint64(o0)  # unsigned: see `_mask_scale_row`
    for i in range(n):
        of[u0 + np.uint64(i)] = v


@jit
def _pad_row(of, o0, Wp, W, C, left, h, H, fill):
    """The padding of one padded channels-last row at of[o0:o0 + Wp·C] (all of it when the image row h lies
    outside [0, H)). Returns whether the row takes data, at o0 + left·C."""
    if h < 0 or h >= H:
        _fill(of, o0, Wp * C, fill)
        return False
    _fill(of, o0, left * C, fill)
    _fill(of, o0 + (left + W) * C, (Wp - left - W) * C, fill)
    return True


@kernel(raw=True)
def nchw_to_nhwc_f32(x, top, left, fill, out):
    """`nchw_to_nhwc` for C-contiguous float32 x and out, in 8 x 8 register blocks (see the module
    docstring)."""
    B, C, H, W = x.shape
    Hp, Wp = out.shape[1], out.shape[2]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    fill = out.dtype.type(fill)
    for bh in prange(B * Hp):
        b, h = bh // Hp, bh % Hp - top
        if _pad_row(of, bh * Wp * C, Wp, W, C, left, h, H, fill):
            _row_blocks(xf, (b * C * H + h) * W, C, H * W, W, of, (bh * Wp + left) * C)
    return out


@jit
def transpose_blocks(src, s0, lds, dst, d0, ldd, ni, nj):
    """dst[d0 + j·ldd + i] = src[s0 + i·lds + j] for i < ni, j < nj (1-D float32): 8 x 8 register blocks
    (`_t8x8`), then the tails element by element."""
    I8, J8 = ni - ni % 8, nj - nj % 8
    for i0 in range(0, I8, 8):
        for j0 in range(0, J8, 8):
            _t8x8(src, s0 + i0 * lds + j0, lds, dst, d0 + j0 * ldd + i0, ldd)
        for j in range(J8, nj):
            for i in range(i0, i0 + 8):
                dst[d0 + j * ldd + i] = src[s0 + i * lds + j]
    for i in range(I8, ni):
        for j in range(nj):
            dst[d0 + j * ldd + i] = src[s0 + i * lds + j]


@jit
def _row_blocks(xf, x0, C, HW, W, of, o0):
    """One NCHW image row (channels at stride HW from x0) into NHWC at o0."""
    transpose_blocks(xf, x0, HW, of, o0, C, C, W)


@jit
def _mask_scale_row(of, mf, o0, m0, W, C, c, rs):
    """of[o0:o0 + W·C] = of·c where mf[m0:m0 + W·C] != 0, else 0; rs (C,) = the sums over the W pixels, in
    pixel order. Returns the count of non-finite values. (`quant.scale_masked` on the row's views, plus the
    sums, took twice as long as this loop: 2.3 ms against 1.1 for B32 32ch 32x32.) Indices are unsigned: a
    signed flat index keeps Numba's negative-index wraparound in the loop, which blocked vectorization (3.9
    ms against 0.38 for B32 32ch 32x32)."""
    zero = np.float32(0.0)
    nb = 0
    u0, v0 = np.uint64(o0), np.uint64(m0)
    for i in range(W * C):
        k = u0 + np.uint64(i)
        v = of[k]
        nb += 0 if abs(v) < np.inf else 1
        of[k] = v * c if mf[v0 + np.uint64(i)] != 0 else zero
    # the sums as 1·of through the register tile, one vector chain per LANES channels: the same additions
    # in the same order (fma(1, v, s) rounds as s + v), but the loop rs[j] += of[o0 + w·C + j] stayed
    # scalar (rs may alias of): 0.33 of 0.85 ms for B32 16ch 32x32 on one core, 0.04 ms so
    C16 = C - C % LANES
    for cb in range(0, C16, LANES):
        tile_fma(1, 1, _ONE, 0, 0, (_OFF0, 1, 0, W), of, o0 + cb, C, rs, cb, C, False)
    for j in range(C16, C):
        rs[j] = zero
    for w in range(W):
        p = u0 + np.uint64(w * C)
        for j in range(C16, C):
            rs[j] += of[p + np.uint64(j)]
    return nb


@kernel(raw=True)
def grad_to_nhwc(g, mask, c, out, rowsum, top, left):
    """The output gradient of a quantized conv into the products' layout, through the output clip, in one
    pass over g (it was a transpose, a masked scale and a BLAS column sum, each a pass over g), padded with
    zeros for the products that read it padded (ConvTranspose2d's; no separate padding pass):
        out[b, top + h, left + w, o] = g[b, o, h, w]·c where mask[(b·H + h)·W + w, o] != 0, else 0
        rowsum[b·H + h, o] = Σ_w out[b, top + h, left + w, o]   (the caller sums the B·H rows: the bias gradient)
    g (B, C, H, W) float32 C-contiguous; mask (B·H·W, C) uint8; out (B, Hp, Wp, C) float32 C-contiguous,
    zero outside the image (Hp >= top + H, Wp >= left + W); rowsum (B·H, C) float32. Returns the number of
    non-finite g values (callers refuse such a gradient)."""
    B, C, H, W = g.shape
    Hp, Wp = out.shape[1], out.shape[2]
    gf, of, mf = g.reshape(g.size), out.reshape(out.size), mask.reshape(mask.size)
    c = np.float32(c)
    bad = 0
    for bp in prange(B * Hp):
        bad += _grad_row(gf, mf, c, of, rowsum, bp, Hp, Wp, H, W, C, top, left)
    return bad


@jit
def _grad_row(gf, mf, c, of, rowsum, bp, Hp, Wp, H, W, C, top, left):
    """Row bp (of B·Hp) of `grad_to_nhwc`; returns its non-finite count."""
    b, h = bp // Hp, bp % Hp - top
    if not _pad_row(of, bp * Wp * C, Wp, W, C, left, h, H, np.float32(0)):
        return 0
    o0 = (bp * Wp + left) * C
    _row_blocks(gf, (b * C * H + h) * W, C, H * W, W, of, o0)
    return _mask_scale_row(of, mf, o0, (b * H + h) * W * C, W, C, c, rowsum[b * H + h])


@kernel(raw=True)
def nhwc_to_nchw(x, out):
    """x (B, H, W, C) -> out (B, C, H, W)."""
    B, H, W, C = x.shape
    for bh in prange(B * H):
        b = bh // H
        h = bh % H
        for c in range(C):
            for w in range(W):
                out[b, c, h, w] = x[b, h, w, c]
    return out


@kernel(raw=True)
def pad_nhwc(x, top, left, fill, out):
    """x (B, H, W, C) -> out (B, Hp, Wp, C): x at out[:, top:top + H, left:left + W], `fill` elsewhere. Both
    C-contiguous: each image row is one contiguous run of W·C values, copied as such (0.27 ms against 0.44
    for B32 16ch 32x32 through the element loop of `nchw_to_nhwc` on an NCHW view, 0.47 against 0.68 for
    32ch)."""
    B, H, W, C = x.shape
    Hp, Wp = out.shape[1], out.shape[2]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    fill = out.dtype.type(fill)
    for bh in prange(B * Hp):
        b, h = bh // Hp, bh % Hp - top
        if _pad_row(of, bh * Wp * C, Wp, W, C, left, h, H, fill):
            s0, d0 = np.uint64((b * H + h) * W * C), np.uint64((bh * Wp + left) * C)
            for i in range(W * C):
                of[d0 + np.uint64(i)] = xf[s0 + np.uint64(i)]
    return out
