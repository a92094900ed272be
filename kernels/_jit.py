"""The one place where kernels get their Numba options.

Every kernel is compiled twice from the same body, serial and parallel (``prange`` becomes ``range`` in the
serial twin); tests check that both agree bit for bit.

Which twin runs: serial by default. Measured on the 2-core CI machine (bench/bench_linear.py, B256 512->512
QAT step): with NumPy's OpenBLAS using both cores, the parallel twins made the step 3.5x slower (16 ms
against 4.6 ms), because OpenBLAS's workers spin after each sgemm and Numba's pool then waits for a
scheduler time slice. The element-wise kernels are a small share of a step once vectorized, so the cores
are better left to BLAS. `set_parallel_threshold(n)` turns the parallel twin on for calls of at least
`n` elements (for machines where BLAS runs single-threaded, say).

Options: ``cache=True`` (compile once per machine, not per process), ``error_model="numpy"`` (no Python
exception checks in the inner loops) and no fastmath: the kernels round, clip and compare, and fastmath may
reorder or contract exactly those operations.
"""
import types

import numba

OPTIONS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)

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
    """A kernel body compiled serial (`.serial`) and parallel (`.parallel`); calling it picks by size."""

    def __init__(self, fn):
        self.py_func = fn
        # A distinct function object per variant: Numba's on-disk cache is keyed by qualified name, so two
        # dispatchers of one function object with different flags would overwrite each other's cache.
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
                                  fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = numba.njit(**OPTIONS)(twin)
        self.parallel = numba.njit(parallel=True, **OPTIONS)(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __call__(self, *args, n=None):
        """Run the parallel twin when `n` (the work size, in elements) reaches the threshold, else serial."""
        if n is not None and PARALLEL_MIN_ELEMENTS is not None and n >= PARALLEL_MIN_ELEMENTS:
            return self.parallel(*args)
        return self.serial(*args)


def kernel(fn):
    """Decorator: compile `fn` as a serial/parallel `Kernel` pair with the project's options."""
    return Kernel(fn)
