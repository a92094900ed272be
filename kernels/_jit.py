"""The one place where kernels get their Numba options.

Every kernel is compiled twice from the same body, serial and parallel (``prange`` becomes ``range`` in the
serial twin); tests check that both agree bit for bit and that the parallel twin ran. Five kernels have no
parallel loop on purpose, so their parallel twin runs serially: `conv_dw_rows` (a sum over the batch in batch
order) and the four GRU recurrences (a loop over time); tests/kernels/test_twins.py keeps that list true.

Which twin runs: serial by default. Measured on the 2-core CI machine (bench/bench_linear.py, B256 512->512
QAT step): with NumPy's OpenBLAS using both cores, the parallel twins made the step 3.5x slower (16 ms
against 4.6 ms), because OpenBLAS's workers spin after each sgemm and Numba's pool then waits for a
scheduler time slice. The element-wise kernels are a small share of a step once vectorized, so the cores
are better left to BLAS. `set_parallel_threshold(n)` turns the parallel twin on for calls of at least
`n` elements (for machines where BLAS runs single-threaded, say).

Options: an on-disk cache (compile once per machine, not per process), ``error_model="numpy"`` (no Python
exception checks in the inner loops) and no fastmath: the kernels round, clip and compare, and fastmath may
reorder or contract exactly those operations.

The cache. Numba keys a cached binary by the signature, the target CPU (name and features), the function's
bytecode and its closure, and trusts it while the function's own source file is unchanged. Two things that
shape witnp's binaries are outside that key: the SIMD width (`simd.width.LANES`, a global frozen into the code, and
the width the callers pad their buffers for) and the other kernel files a kernel calls into (editing
`simd/tile.py` would leave `conv/direct.py`'s cached binary, which inlines the tile, stale). `jit` therefore compiles
every kernel with a cache whose key also holds LANES and a digest of all kernel sources: a binary compiled
for 16 lanes is never served to an 8-lane process (whose buffers are padded for 8: an out-of-bounds read
otherwise), and any edit to any kernel file recompiles every kernel. Under ``NUMBA_CPU_NAME=generic``
(Numba's way to share one cache between machines) the CPU part of the key no longer tells an AVX2 host
from an AVX-512 one; the LANES part still does, so each host gets the binary of its own width (compiled
for the generic CPU, as that setting asks).
"""
import glob
import hashlib
import os
import types

import numba
import numpy as np
from numba.core.caching import FunctionCache

from .simd.width import LANES

OPTIONS = dict(error_model="numpy", fastmath=False, nogil=True)


def _sources_digest():
    h = hashlib.sha256()
    top = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(top, "**", "*.py"), recursive=True)):
        with open(path, "rb") as f:
            h.update(os.path.relpath(path, top).encode() + b"\0" + f.read())
    return h.hexdigest()


CACHE_TAG = ("witnp-kernels", LANES, _sources_digest())


class _KeyedCache(FunctionCache):
    """Numba's per-function disk cache with `CACHE_TAG` (width, kernel sources) added to every index key."""

    def _index_key(self, sig, codegen):
        return super()._index_key(sig, codegen) + (CACHE_TAG,)


def jit(fn=None, **options):
    """`numba.njit` with the project's options and the keyed disk cache; ``@jit`` or ``@jit(inline=...)``."""
    if fn is None:
        return lambda f: jit(f, **options)
    disp = numba.njit(**OPTIONS, **options)(fn)
    disp._cache = _KeyedCache(disp.py_func)  # what Dispatcher.enable_caching does, with our key
    return disp

# Calls of at least this many elements run the parallel twin; None: always serial (see above).
PARALLEL_MIN_ELEMENTS = None


def set_parallel_threshold(n):
    """Run the parallel twins for calls of >= n elements (None: never). Returns the previous setting."""
    global PARALLEL_MIN_ELEMENTS
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"set_parallel_threshold: n={n!r}; expected a non-negative int or None")
    old, PARALLEL_MIN_ELEMENTS = PARALLEL_MIN_ELEMENTS, n
    return old


class Kernel:
    """A kernel body compiled serial (`.serial`) and parallel (`.parallel`); calling it picks by size.

    raw=True marks a kernel that reads its arrays through raw pointers (the LLVM-IR tiles and gathers of
    `simd`, which ignore strides): calling it with an array that is not C-contiguous is refused with a
    ValueError naming the argument, instead of reading the wrong memory. `parallel_calls` counts the calls
    that ran the parallel twin (the tests' proof that it ran)."""

    def __init__(self, fn, raw=False):
        self.py_func = fn
        self.raw = raw
        self.parallel_calls = 0
        self._arg_names = fn.__code__.co_varnames[:fn.__code__.co_argcount]
        # A distinct function object per variant: Numba's on-disk cache is keyed by qualified name, so two
        # dispatchers of one function object with different flags would overwrite each other's cache.
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
                                  fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = jit(twin)
        self.parallel = jit(fn, parallel=True)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __call__(self, *args, n=None):
        """Run the parallel twin when `n` (the work size, in elements) reaches the threshold, else serial."""
        if self.raw:
            self.check_layout(args)
        if n is not None and PARALLEL_MIN_ELEMENTS is not None and n >= PARALLEL_MIN_ELEMENTS:
            self.parallel_calls += 1
            return self.parallel(*args)
        return self.serial(*args)

    def check_layout(self, args):
        """ValueError for an array argument that is not C-contiguous (a raw kernel would misread it)."""
        for name, a in zip(self._arg_names, args):
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
                raise ValueError(f"{self.__name__}: argument {name} is a non-contiguous {a.dtype} array (shape "
                                 f"{a.shape}, strides {a.strides}); this kernel reads raw memory: expected a "
                                 f"C-contiguous array (np.ascontiguousarray)")


def kernel(fn=None, *, raw=False):
    """Decorator: compile `fn` as a serial/parallel `Kernel` pair with the project's options; ``@kernel`` or
    ``@kernel(raw=True)`` for kernels that read arrays through raw pointers."""
    if fn is None:
        return lambda f: Kernel(f, raw=raw)
    return Kernel(fn, raw=raw)
