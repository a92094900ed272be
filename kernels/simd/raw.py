"""The contract of the LLVM-IR intrinsics: they read arrays through raw data pointers, ignoring strides."""
from numba import types
from numba.core.errors import TypingError

__all__ = ["require_contiguous"]


def require_contiguous(who, *arrays):
    """At typing time: every array argument 1-D and C-contiguous (Numba layout 'C'), or a TypingError that says
    so. A strided view typed 'A' would otherwise be read as if its elements were adjacent: wrong numbers and
    no error (a 1-D 'C' array is contiguous by construction)."""
    for a in arrays:
        if isinstance(a, types.Array) and (a.ndim != 1 or a.layout != "C"):
            raise TypingError(f"{who}: got {a}; this intrinsic reads raw memory and takes only 1-D C-contiguous "
                              f"arrays (pass np.ascontiguousarray(a).ravel())")
