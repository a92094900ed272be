"""A register tile of dot products, in LLVM IR: the weight gradient of the channels-first convolutions.

In a channels-first (NCHW) image the pixels of a row are contiguous, so a weight gradient
dW[o, q] = Σ_pixels g[o, pixel] · x[q, pixel] is a set of long dot products. `dot_fma` keeps DR x DC vector
accumulators in registers (DR output-gradient rows, DC input offsets), loads DR + DC vectors per step and
issues DR·DC fused multiply-adds, then sums each accumulator's lanes once at the end (a 4-step shuffle tree):

    C[c0 + p·ldc + v] (+)= Σ_{ko < nko} Σ_{k < nk·LANES} G[g0 + gk[ko] + p·ldg + k] · X[x0 + xk[ko] + xo[q0 + v] + k]

for p < DR, v < DC. The outer level walks a table (images), the inner one the pixels in steps of LANES.
Measured on the B32 16->32 3x3 32x32 weight gradient, one core, image-outer loop: DR x DC = 4 x 6 ran in
3.5 ms; 6 x 4 3.4-4.5, 4 x 4 4.0, 8 x 3 5.5, 2 x 12 5.4. On AVX2 (16 registers) the tile is 2 x 4.

Exactness: as in `tile`: every partial sum of integer codes below 2^24 is exact in float32, in any order.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import jit
from .raw import require_contiguous
from .width import LANES

__all__ = ["DR", "DC", "dot_fma"]

DR, DC = (4, 6) if LANES == 16 else (2, 4)


@intrinsic
def _dot(typingctx, Gm, g0, ldg, gk, Xm, x0, xk, xo, q0, nko, nk, Cm, c0, ldc, accum):
    require_contiguous("dot_fma", Gm, gk, Xm, xk, xo, Cm)
    if any(getattr(t, "dtype", None) != types.float32 or t.ndim != 1 for t in (Gm, Xm, Cm)):
        return None
    sig = types.void(Gm, g0, ldg, gk, Xm, x0, xk, xo, q0, nko, nk, Cm, c0, ldc, accum)

    def codegen(context, builder, signature, args):
        G_, g0_, ldg_, gk_, X_, x0_, xk_, xo_, q0_, nko_, nk_, C_, c0_, ldc_, acc_ = args
        tys = signature.args
        i64 = ir.IntType(64)
        vt = ir.VectorType(ir.FloatType(), LANES)
        vptr = vt.as_pointer()

        def ptr(i):
            return context.make_array(tys[i])(context, builder, args[i]).data

        def as64(i, v):
            return context.cast(builder, v, tys[i], types.int64)

        def entry(i, idx):  # an int64 from the table argument i
            return context.cast(builder, builder.load(builder.gep(ptr(i), [idx])), tys[i].dtype, types.int64)

        def vload(p, idx):
            return builder.load(builder.bitcast(builder.gep(p, [idx]), vptr), align=4)

        g0_, ldg_, x0_, q0_, nko_, nk_, c0_, ldc_ = (as64(i, args[i]) for i in (1, 2, 5, 8, 9, 10, 12, 13))
        Gp, Xp, Cp = ptr(0), ptr(4), ptr(11)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{LANES}f32")
        zero = ir.Constant(vt, [0.0] * LANES)
        accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(DC)] for _ in range(DR)]
        xoff = [entry(7, builder.add(q0_, ir.Constant(i64, v))) for v in range(DC)]
        grow = [builder.mul(ir.Constant(i64, p), ldg_) for p in range(DR)]
        with cgutils.for_range(builder, nko_) as lo:
            gb = builder.add(g0_, entry(3, lo.index))
            xb = builder.add(x0_, entry(6, lo.index))
            gbp = [builder.add(gb, grow[p]) for p in range(DR)]
            xbv = [builder.add(xb, xoff[v]) for v in range(DC)]
            with cgutils.for_range(builder, nk_) as li:
                k = builder.mul(li.index, ir.Constant(i64, LANES))
                gv = [vload(Gp, builder.add(gbp[p], k)) for p in range(DR)]
                for v in range(DC):  # one X vector at a time: DR + 1 operands live beside the accumulators
                    xv = vload(Xp, builder.add(xbv[v], k))
                    for p in range(DR):
                        builder.store(builder.call(fma, [gv[p], xv, builder.load(accs[p][v])]), accs[p][v])
        add_old = builder.icmp_unsigned("!=", acc_, ir.Constant(acc_.type, 0))
        for p in range(DR):
            for v in range(DC):
                a, n = builder.load(accs[p][v]), LANES
                while n > 1:  # halves added pairwise: log2(LANES) shuffles and adds
                    h = n // 2
                    lo_half = builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(ir.IntType(32), h),
                                                                       list(range(h))))
                    hi_half = builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(ir.IntType(32), h),
                                                                       list(range(h, n))))
                    a, n = builder.fadd(lo_half, hi_half), h
                s = builder.extract_element(a, ir.Constant(ir.IntType(32), 0))
                cp = builder.gep(Cp, [builder.add(c0_, builder.add(builder.mul(ir.Constant(i64, p), ldc_),
                                                                   ir.Constant(i64, v)))])
                with builder.if_else(add_old) as (then, otherwise):
                    with then:
                        builder.store(builder.fadd(builder.load(cp), s), cp)
                    with otherwise:
                        builder.store(s, cp)
        return context.get_dummy_value()

    return sig, codegen


@jit
def dot_fma(Gm, g0, ldg, gk, Xm, x0, xk, xo, q0, nko, nk, Cm, c0, ldc, accum):
    """One DR x DC tile of dot products (module docstring). Gm, Xm, Cm: 1-D float32; gk, xk (>= nko,) and
    xo (>= q0 + DC,) int64 tables. The caller keeps every index in bounds (no checks here)."""
    _dot(Gm, g0, ldg, gk, Xm, x0, xk, xo, q0, nko, nk, Cm, c0, ldc, accum)
