"""A register-tiled multiply-accumulate written in LLVM IR: the inner loop of every direct convolution.

Why IR: Numba does not keep a small accumulator array in registers (its arrays may alias), and its default
pass pipeline leaves the SLP vectorizer off, so a tile written as Python loops runs scalar (3-4 GFLOP/s
measured here). `tile_fma` is a Numba intrinsic that emits the loop with explicit `<LANES x float>` vectors:
MR x NV accumulator vectors live in registers for the whole reduction, each step loads NV vectors of B,
broadcasts MR values of A and issues MR·NV fused multiply-adds. On this project's AVX-512 machine an
in-cache 6x32 tile ran at 123 GFLOP/s on one core (OpenBLAS sgemm on the same data: 82).

The tile computes, for p < MR and o < NV·LANES:

    C[c0 + p·ldc + o] (+)= Σ_{ko < nko} Σ_{ki < nki} A[a0 + p·ps + offs[ko] + ki·si] · B[b0 + (ko·nki + ki)·ldb + o]

A two-level reduction with a table of outer offsets is enough for every product a convolution needs:
kernel taps x channels (forward), output rows x output columns (weight gradient). `tile_fma_tab` takes a
table for B as well (B row b0 + boffs[ko] + ki·ldb): the channels-first convolutions of `wide`, where B is
the image and each tap reads it at its own offset.

Exactness: every product and partial sum of integer codes is an integer below 2^24 in magnitude when the
caller has checked the bound (K·max|a|·max|b| < 2^24), so the fused multiply-add chain is exact in float32,
whatever the order. Float inputs get one rounding per fused multiply-add (vs. two for mul + add).

LANES (`simd`) is 16 where the host has AVX-512F and 8 otherwise (AVX2: 16 ymm registers fit a 6x2 tile),
or what WITNP_SIMD_LANES sets; the compiled kernels are cached per width (`_jit`), so a cached binary never
meets the other width.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .._jit import jit
from .raw import require_contiguous
from .width import LANES

__all__ = ["LANES", "lanes_up", "pad_cols", "tile_fma", "tile_fma_tab", "rows_fma", "acc_rows"]

def _make_tile(NV, SIZES):
    """The tile intrinsic for NV column vectors: one register-resident loop per row count in SIZES, picked
    by the runtime argument mr (a row count outside SIZES does nothing)."""
    @intrinsic
    def _tile(typingctx, mr, A, a0, ps, offs, nko, si, nki, Bm, b0, boffs, ldb, Cm, c0, ldc, accum):
        require_contiguous("tile_fma", A, offs, Bm, boffs, Cm)
        if any(getattr(t, "dtype", None) != types.float32 or t.ndim != 1 for t in (A, Bm, Cm)):
            return None  # the loads below read float32: refuse any other array at typing time
        table = not isinstance(boffs, (types.NoneType, types.Omitted))
        sig = types.void(mr, A, a0, ps, offs, nko, si, nki, Bm, b0, boffs, ldb, Cm, c0, ldc, accum)

        def codegen(context, builder, signature, args):
            mr_, A_, a0_, ps_, offs_, nko_, si_, nki_, B_, b0_, boffs_, ldb_, C_, c0_, ldc_, acc_ = args
            tys = signature.args
            i64, f32 = ir.IntType(64), ir.FloatType()
            vt = ir.VectorType(f32, LANES)
            vptr = vt.as_pointer()

            def ptr(i, v):
                return context.make_array(tys[i])(context, builder, v).data

            mr_, a0_, ps_, nko_, si_, nki_, b0_, ldb_, c0_, ldc_ = (
                context.cast(builder, v, tys[i], types.int64)
                for i, v in ((0, mr_), (2, a0_), (3, ps_), (5, nko_), (6, si_), (7, nki_), (9, b0_), (11, ldb_),
                             (13, c0_), (14, ldc_)))
            Ap, Op, Bp, Cp = ptr(1, A_), ptr(4, offs_), ptr(8, B_), ptr(12, C_)
            BOp = ptr(10, boffs_) if table else None
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fma.v{LANES}f32")
            zero = ir.Constant(vt, [0.0] * LANES)
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            lane0 = ir.Constant(ir.IntType(32), 0)
            add_old = builder.icmp_unsigned("!=", acc_, ir.Constant(acc_.type, 0))

            def emit(MR):
                # allocas in the entry block: SROA turns them into registers
                accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(MR)]
                prow = [builder.mul(ir.Constant(i64, p), ps_) for p in range(MR)]
                with cgutils.for_range(builder, nko_) as lo:
                    off = context.cast(builder, builder.load(builder.gep(Op, [lo.index])), tys[4].dtype,
                                       types.int64)
                    abase = builder.add(a0_, off)
                    if table:  # B row b0 + boffs[ko] + ki·ldb
                        bbase = builder.add(b0_, context.cast(builder, builder.load(builder.gep(BOp, [lo.index])),
                                                              tys[10].dtype, types.int64))
                    else:  # B row b0 + (ko·nki + ki)·ldb
                        bbase = builder.add(b0_, builder.mul(builder.mul(lo.index, nki_), ldb_))
                    with cgutils.for_range(builder, nki_) as li:
                        brow = builder.add(bbase, builder.mul(li.index, ldb_))
                        bv = [builder.load(builder.bitcast(
                            builder.gep(Bp, [builder.add(brow, ir.Constant(i64, LANES * v))]), vptr), align=4)
                            for v in range(NV)]
                        ao = builder.add(abase, builder.mul(li.index, si_))
                        for p in range(MR):
                            a = builder.load(builder.gep(Ap, [builder.add(ao, prow[p])]))
                            sp = builder.shuffle_vector(builder.insert_element(undef, a, lane0), undef, splat)
                            for v in range(NV):
                                builder.store(builder.call(fma, [sp, bv[v], builder.load(accs[p][v])]),
                                              accs[p][v])
                for p in range(MR):
                    for v in range(NV):
                        ci = builder.add(c0_, builder.add(builder.mul(ir.Constant(i64, p), ldc_),
                                                          ir.Constant(i64, LANES * v)))
                        cptr = builder.bitcast(builder.gep(Cp, [ci]), vptr)
                        with builder.if_then(add_old):
                            builder.store(builder.fadd(builder.load(accs[p][v]), builder.load(cptr, align=4)),
                                          accs[p][v])
                        builder.store(builder.load(accs[p][v]), cptr, align=4)

            for MR in SIZES:
                with builder.if_then(builder.icmp_signed("==", mr_, ir.Constant(i64, MR))):
                    emit(MR)
            return context.get_dummy_value()

        return sig, codegen

    return _tile


# Row counts compiled per column width: every count up to the register file's limit, so that a run of n
# rows is cut into equal tiles (`_rows_next`). AVX-512 has 32 vector registers, so a 12 x 2 tile (24
# accumulators, 2 B vectors, 1 broadcast) fits, and halves the tile calls and B loads of a 6 x 2 one
# (measured on the GRU's 32 x 128 x 256 step product: 85 -> 102 GFLOP/s in cache); AVX2's 16 registers stop
# at 6 x 2. Equal tiles instead of greedy ones: 15 pixels were 12 + 2 + 1, and the 2- and 1-row tiles
# have too few independent accumulators to hide the fused multiply-add's latency; as 8 + 7, ConvTranspose2d's
# B32 k4 s2 row-phase product went 1.08 -> 0.86 ms (one core, min of 30).
_MAX2 = 12 if LANES == 16 else 6
_MAX1 = 12
_tile2 = _make_tile(2, tuple(range(_MAX2, 0, -1)))
_tile1 = _make_tile(1, tuple(range(_MAX1, 0, -1)))


@jit
def _rows_next(left, most):
    """The next tile's row count for `left` rows in tiles of at most `most`: the run cut into equal tiles
    (sizes differ by at most 1)."""
    tiles = (left + most - 1) // most
    return (left + tiles - 1) // tiles


@jit
def tile_fma(mr, nv, A, a0, ps, red, Bm, b0, ldb, Cm, c0, ldc, accum):
    """One tile of mr rows x nv·LANES columns (see the module docstring); 1 <= mr <= `_MAX2` (nv = 2) or
    `_MAX1` (nv = 1). red = (offs, nko, si, nki), the two-level reduction (a tuple: free in Numba). All
    arrays are 1-D float32 (offs: 1-D int64); the caller guarantees every index is in bounds (no checks
    here)."""
    offs, nko, si, nki = red
    if nv == 2:
        _tile2(mr, A, a0, ps, offs, nko, si, nki, Bm, b0, None, ldb, Cm, c0, ldc, accum)
    else:
        _tile1(mr, A, a0, ps, offs, nko, si, nki, Bm, b0, None, ldb, Cm, c0, ldc, accum)


@jit
def tile_fma_tab(mr, A, a0, ps, red, Bm, b0, boffs, ldb, Cm, c0, ldc, accum):
    """A 2·LANES-column tile whose B rows come from a table too: B row (ko, ki) starts at
    b0 + boffs[ko] + ki·ldb (in `tile_fma`: b0 + (ko·nki + ki)·ldb). 1 <= mr <= `_MAX2`; red as in
    `tile_fma`."""
    offs, nko, si, nki = red
    _tile2(mr, A, a0, ps, offs, nko, si, nki, Bm, b0, boffs, ldb, Cm, c0, ldc, accum)


@jit
def rows_fma(n, ncols, A, a0, ps, red, Bm, b0, ldb, Cm, c0, ldc, accum):
    """`n` rows (A stride ps, C stride ldc) x `ncols` columns (a multiple of LANES) of the tile product,
    cut into column blocks of 2·LANES then LANES and, down the rows, equal tiles (`_rows_next`); red =
    (offs, nko, si, nki) as in `tile_fma`."""
    for cb in range(0, ncols, 2 * LANES):
        nv = 2 if ncols - cb >= 2 * LANES else 1
        p = 0
        while p < n:
            left = n - p
            mr = _rows_next(left, _MAX2) if nv == 2 else _rows_next(left, _MAX1)
            tile_fma(mr, nv, A, a0 + p * ps, ps, red, Bm, b0 + cb, ldb, Cm, c0 + p * ldc + cb, ldc, accum)
            p += mr


_OFF0 = np.zeros(1, np.int64)  # a one-entry offset table: a plain (not tap-indexed) reduction


def acc_rows(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
    """For p < n, o < ncols (flat 1-D arrays):
        Cm[c0 + p·ldc + o] (+)= Σ_{k < nk} A[a0 + p·ps + k] · Bm[k·ldb + o]
    float32 arrays: the register tile (ncols a multiple of LANES); any other dtype (the float64 fallback
    past the 2^24 bound): loops in order k."""
    raise NotImplementedError("acc_rows runs only inside compiled kernels")


@overload(acc_rows)
def _acc_rows(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
    if all(a.dtype == types.float32 for a in (A, Bm, Cm)):
        def tiled(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
            # int64, bool and a writable table, as the convolutions pass them: one compiled rows_fma
            # (a literal 1 or the read-only global _OFF0 would each be a specialization of its own)
            rows_fma(n, ncols, A, a0, ps, (np.zeros(1, np.int64), np.int64(1), np.int64(1), nk), Bm, np.int64(0),
                     ldb, Cm, c0, ldc, np.bool_(accum))
        return tiled

    def loops(n, ncols, A, a0, ps, nk, Bm, ldb, Cm, c0, ldc, accum):
        for p in range(n):
            c = c0 + p * ldc
            if not accum:
                for o in range(ncols):
                    Cm[c + o] = 0
            for k in range(nk):
                a = A[a0 + p * ps + k]
                for o in range(ncols):
                    Cm[c + o] += a * Bm[k * ldb + o]
    return loops


def lanes_up(n):
    """n rounded up to a multiple of LANES: the column count the tile works in."""
    return -(-n // LANES) * LANES


def pad_cols(a, dtype=np.float32):
    """a (K, O) -> a new (K, lanes_up(O)) array of `dtype`, zero in the added columns (a tile's B operand)."""
    out = np.zeros((a.shape[0], lanes_up(a.shape[1])), dtype)
    out[:, :a.shape[1]] = a
    return out
