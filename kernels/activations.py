"""Element-wise functions NumPy lacks: the exact (erf) GELU and its derivative.

Evaluated in float64 and rounded once to float32, so the result is the correctly rounded float32 value in
all but the rarest cases (the vendor evaluates in float32).
"""
import math

import numpy as np
from numba import prange

from ._jit import kernel

__all__ = ["gelu", "gelu_grad"]

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@kernel
def gelu(x, out):
    """out = x·Φ(x) = 0.5·x·(1 + erf(x/√2)); x, out flat float32 arrays of the same size."""
    for i in prange(x.size):
        v = np.float64(x[i])
        out[i] = np.float32(0.5 * v * (1.0 + math.erf(v * _SQRT1_2)))
    return out


@kernel
def gelu_grad(x, out):
    """out = d/dx GELU(x) = Φ(x) + x·φ(x); x, out flat float32 arrays."""
    for i in prange(x.size):
        v = np.float64(x[i])
        out[i] = np.float32(0.5 * (1.0 + math.erf(v * _SQRT1_2)) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))
    return out
