"""Exact integer matrix products on float32 BLAS.

The array's accumulator is an integer. float32 BLAS on integer-valued operands is exact as long as every
partial sum stays within 2^24 (the float32 significand), whatever order the BLAS adds in, FMA included.
With |a| <= amax and |b| <= bmax a dot product of length K is bounded by K·amax·bmax, so the contraction is
cut into blocks of at most (2^24 / (amax·bmax)) terms and the block results are added in float64 (exact to
2^53). Typical 8-bit layers (255·128·512 < 2^24) take one sgemm call: full BLAS speed.
"""
import numpy as np

__all__ = ["exact_block", "matmul_exact"]

_EXACT = float(1 << 24)


def exact_block(amax: float, bmax: float) -> int:
    """Largest contraction length whose integer dot products are exact in float32."""
    bound = max(float(amax) * float(bmax), 1.0)
    return max(1, int(_EXACT // bound))


def matmul_exact(a: np.ndarray, b: np.ndarray, amax: float, bmax: float) -> np.ndarray:
    """a @ b for integer-valued float32 operands, exactly (NumPy matmul broadcasting over leading dims).

    a (..., M, K) float32, |a| <= amax; b (..., K, N) float32 (any strides; a transposed view is free),
    |b| <= bmax. Returns (..., M, N): float32 when one sgemm per matrix is exact, else float64 holding the
    exact integers.
    """
    K = a.shape[-1]
    kb = exact_block(amax, bmax)
    if K <= kb:
        return a @ b
    out = None
    for k0 in range(0, K, kb):
        part = (a[..., k0:k0 + kb] @ b[..., k0:k0 + kb, :]).astype(np.float64)
        out = part if out is None else out + part
    return out
