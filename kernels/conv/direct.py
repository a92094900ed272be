"""Direct (implicit-GEMM) convolution on padded channels-last images, built on the register tile of `tile`.

No im2row matrix is written: the tile reads each output pixel's receptive field straight from the padded
image through a table of tap offsets, so the input stays in cache and the B·Ho·Wo x C·kh·kw copy (and, in
the backward, its row2im scatter) disappears. Offsets are flat indices into the 1-D views of the arrays.

Shapes (1-D arguments are flat views of the arrays named):
    x      (B, Hp, Wp, C) float32, already padded
    wb     (G, T·kc, ogp) float32: per group, tap-major rows (t, c) of the weight, columns padded to ogp
    out    (rows, ldc) float32 with ldc >= G·ogp; ogp a multiple of LANES
Races: `conv_rows` writes output rows r only in iteration r (prange-safe); `conv_dw_rows` sums over the
batch into one output and runs serially.
"""
import numpy as np
from numba import prange

from .._jit import kernel
from ..simd.tile import rows_fma

__all__ = ["conv_rows", "conv_dw_rows"]


@kernel(raw=True)
def conv_rows(x, wb, arow, crow, n, ps, pc, tapoff, kc, groups, ag, ogp, out):
    """For each output row r and group g, n pixels q:
        out[crow[r] + q·pc + g·ogp + o] = Σ_t Σ_{c<kc} x[arow[r] + g·ag + q·ps + tapoff[t] + c] · wb[g, t·kc + c, o]
    x, wb, out: flat float32; arow, crow (R,) int64; tapoff (T,) int64 (T = 0 writes zeros)."""
    T = tapoff.shape[0]
    # np.int64 / np.bool_ constants, not literals: every caller shares one compiled rows_fma (a literal 1 or
    # True is a specialization of its own, ~1.5 s more of a cold start; the tile reads them the same way)
    for r in prange(arow.shape[0]):
        for g in range(groups):
            rows_fma(n, ogp, x, arow[r] + g * ag, ps, (tapoff, T, np.int64(1), kc), wb, g * T * kc * ogp, ogp, out,
                     crow[r] + g * ogp, pc, np.bool_(False))
    return out


@kernel(raw=True)
def conv_dw_rows(x, gy, abase, rowoff, si, nki, tapoff, cg, groups, ogp, ldg, out):
    """Weight gradient of a direct convolution, added into out (G, T, cg, ogp) (flat float32):
        out[g, t, c, o] += Σ_b Σ_{ko, ki} x[abase[b] + rowoff[ko] + ki·si + tapoff[t] + g·cg + c]
                                          · gy[((b·nko + ko)·nki + ki)·ldg + g·ogp + o]
    gy holds the output gradient as (B·Ho·Wo, ldg) rows, group g's columns at g·ogp (padded with zeros)."""
    T = tapoff.shape[0]
    nko = rowoff.shape[0]
    for b in range(abase.shape[0]):  # a sum over the batch: serial, in batch order
        for t in range(T):
            for g in range(groups):
                rows_fma(cg, ogp, x, abase[b] + tapoff[t] + g * cg, np.int64(1), (rowoff, nko, si, nki), gy,
                         b * nko * nki * ldg + g * ogp, ldg, out, (g * T + t) * cg * ogp, ogp, np.bool_(True))
    return out
