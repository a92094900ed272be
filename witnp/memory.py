"""How the C allocator treats the large, short-lived arrays of a training step.

A quantized Conv2d step allocates and frees a dozen arrays of 1-4 MB (codes, accumulators, masks,
channels-last copies). glibc's malloc gives such blocks back to the kernel on free (munmap, or a trim of
the heap top) under a threshold it adjusts as the program runs, so whether the next step gets the same
memory back or fresh pages depends on the order of the frees. Fresh pages cost a page fault each on first
touch, inside whichever kernel writes them first: measured on the 2-core CI machine, one driver of a B32
16->32 3x3 QAT Conv2d step took 1,641-2,152 page faults per step (38.8 ms) and none with the thresholds
fixed (30.7 ms, one run each); another driver, freeing in another order, took none either way.

`keep_freed_memory()` fixes both thresholds (glibc's mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD), so
blocks up to `mmap_threshold` come from the heap and freed memory stays in the process for the next step:
the process keeps its peak heap instead of returning it. The `witnp` command line turns it on (set
WITNP_KEEP_FREED_MEMORY=0 to leave malloc as it is); library users call it once before training. This is
the job a launcher does with LD_PRELOAD=libjemalloc for PyTorch on CPU, without a second library.
On a C library other than glibc (macOS, musl) it does nothing and returns False.

`empty()` places the large arrays of a step. malloc puts two equal blocks allocated one after the other
exactly one block apart (plus its 16-byte header), and the blocks of a step are often a power of two in
size (B32 x 32 x 32 x 32 float32 = 4 MiB). A kernel streaming one array into the other then reads and
writes addresses 4 MiB + 16 bytes apart: requant of a (32768, 32) accumulator measured 7.6 ms at that
distance against 1.6 ms at 4 KiB more (the same process, the same arrays, no page faults); 16 to 64 bytes
off a 4 MiB multiple was slow, 128 bytes or more was not. (Measured, not traced to a cause: cache-set
conflicts and the store buffer's 4 KiB address aliasing both fit.) `empty()` gives each large array its own
offset in a 4 KiB page (a 64-byte-aligned colour that changes from one call to the next), so no two
arrays allocated in sequence sit at that distance.
"""
from __future__ import annotations

import ctypes
import itertools
import platform

import numpy as np

__all__ = ["keep_freed_memory", "GLIBC_MAX_MMAP_THRESHOLD", "empty", "zeros"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE/2: 32 MiB on 64-bit builds.
GLIBC_MAX_MMAP_THRESHOLD = 32 << 20
_GLIBC_DEFAULT = 128 << 10  # both thresholds' starting values in glibc


def _libc():
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)  # the process's own symbols, glibc's mallopt among them (no library search)


def keep_freed_memory(on: bool = True, mmap_threshold: int = GLIBC_MAX_MMAP_THRESHOLD,
                      trim_threshold: int = 1 << 30) -> bool:
    """Keep freed heap memory in the process, so each training step reuses the last step's pages.

    on=True: blocks smaller than `mmap_threshold` bytes (at most 32 MiB, glibc's ceiling) come from the
    heap, and the heap top is given back only when more than `trim_threshold` bytes are free.
    on=False: both thresholds back to glibc's starting 128 KiB (fixed; glibc's own adjustment stays off).
    Returns True when glibc accepted the settings, False where the C library is not glibc.
    """
    for name, v in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"keep_freed_memory: {name}={v!r}; expected a positive int (bytes)")
    if mmap_threshold > GLIBC_MAX_MMAP_THRESHOLD:
        raise ValueError(f"keep_freed_memory: mmap_threshold={mmap_threshold}; glibc accepts at most "
                         f"{GLIBC_MAX_MMAP_THRESHOLD} (32 MiB)")
    libc = _libc()
    if libc is None:
        return False
    if not on:
        mmap_threshold = trim_threshold = _GLIBC_DEFAULT
    ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold))
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(trim_threshold, 2**31 - 1)))
    return bool(ok)


# Arrays below this size stay plain np.empty: they fit in L1/L2 and the extra page would cost more than
# it saves.
_COLOUR_MIN_BYTES = 64 << 10
_PAGE, _LINE = 4096, 64
_colours = itertools.count()


def empty(shape, dtype=np.float32) -> np.ndarray:
    """np.empty(shape, dtype), C-contiguous. Arrays of 64 KiB and more are 64-byte aligned and start at a
    colour (offset in a 4 KiB page) that steps by 17 cache lines per call, so consecutive allocations
    differ by at least 1 KiB modulo 4 KiB; each is a view of a buffer 4 KiB larger. Smaller arrays are
    plain np.empty."""
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = dt.itemsize
    for d in shape:
        nbytes *= d
    if nbytes < _COLOUR_MIN_BYTES:
        return np.empty(shape, dt)
    raw = np.empty(nbytes + _PAGE, np.uint8)
    colour = (next(_colours) * 17 % (_PAGE // _LINE)) * _LINE
    start = (colour - raw.ctypes.data) % _PAGE
    return raw[start:start + nbytes].view(dt).reshape(shape)


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """`empty` filled with zeros."""
    a = empty(shape, dtype)
    a.fill(0)
    return a
