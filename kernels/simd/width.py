"""The SIMD width the kernels are compiled for: LANES float32 lanes per vector register.

One width per process, fixed at import: 16 where the host has AVX-512F, 8 otherwise (AVX2 and older; the
LLVM-IR tiles then hold 8-lane vectors and fit AVX2's 16 registers). The environment variable
``WITNP_SIMD_LANES=8`` or ``=16`` overrides the choice, so that both widths can be compiled and tested on any
x86-64 host: 8 lanes on an AVX-512 host run AVX2-shaped tiles; 16 lanes on an AVX2 host run correct code that
LLVM splits into pairs of 8-lane instructions (slower, never wrong).

Everything that depends on the width (the tiles' row counts, the column padding of B operands, buffer
slack) reads it from here; compiled kernels are cached per width (`_jit`), so a cache filled under one width
is never served to the other.
"""
import os

import llvmlite.binding as llb

__all__ = ["LANES", "host_lanes", "ENV"]

ENV = "WITNP_SIMD_LANES"


def host_lanes():
    """16 when the host CPU has AVX-512F, else 8 (what LLVM reports for this host, not NUMBA_CPU_NAME)."""
    return 16 if "+avx512f" in llb.get_host_cpu_features().flatten().split(",") else 8


def _chosen():
    value = os.environ.get(ENV, "").strip()
    if not value:
        return host_lanes()
    if value not in ("8", "16"):
        raise ValueError(f"{ENV}={value!r}: expected 8 (AVX2-shaped kernels) or 16 (AVX-512), or unset "
                         f"(the host's width, {host_lanes()} here)")
    return int(value)


LANES = _chosen()
