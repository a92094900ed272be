"""The one place where kernels get their Numba options.

Every kernel is compiled twice from the same body, serial and parallel (``prange`` becomes ``range`` in the
serial twin), so tests can check that both agree bit for bit and callers can pick the serial one for small
arrays, where waking the thread pool costs more than the work.

Options: ``cache=True`` (compile once per machine, not per process), ``error_model="numpy"`` (no Python
exception checks in the inner loops) and no fastmath: the kernels round, clip and compare, and fastmath may
reorder or contract exactly those operations.
"""
import types

import numba

OPTIONS = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)

# Below this many elements the serial twin is used: thread wake-up (~10 us) outweighs the work.
PARALLEL_MIN_ELEMENTS = 1 << 16


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
        """Run the parallel twin when `n` (the work size, in elements) is large, else the serial one."""
        if n is not None and n >= PARALLEL_MIN_ELEMENTS:
            return self.parallel(*args)
        return self.serial(*args)


def kernel(fn):
    """Decorator: compile `fn` as a serial/parallel `Kernel` pair with the project's options."""
    return Kernel(fn)
