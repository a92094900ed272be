"""How the C allocator treats the large, short-lived arrays of a training step.

A quantized Conv2d step allocates and frees a dozen arrays of 1-4 MB (codes, accumulators, masks,
channels-last copies). glibc's malloc gives such blocks back to the kernel on free (munmap, or a trim of
the heap top) under a threshold it adjusts as the program runs, so whether the next step gets the same
memory back or fresh pages depends on the order of the frees. Fresh pages cost a page fault each on first
touch, inside whichever kernel writes them first: measured on the 2-core CI machine, a B32 16->32 3x3
QAT Conv2d step took 1,641 page faults and ~30% longer than the same step with none; requant alone went
from 1.3 ms to 7.7 ms. The figure swings from run to run with the allocation order, not with the code.

`keep_freed_memory()` fixes both thresholds (glibc's mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD), so
blocks up to `mmap_threshold` come from the heap and freed memory stays in the process for the next step:
the process keeps its peak heap instead of returning it. The `witnp` command line turns it on (set
WITNP_KEEP_FREED_MEMORY=0 to leave malloc as it is); library users call it once before training. This is
the job a launcher does with LD_PRELOAD=libjemalloc for PyTorch on CPU, without a second library.
On a C library other than glibc (macOS, musl) it does nothing and returns False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory", "GLIBC_MAX_MMAP_THRESHOLD"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE/2: 32 MiB on 64-bit builds.
GLIBC_MAX_MMAP_THRESHOLD = 32 << 20
_GLIBC_DEFAULT = 128 << 10  # both thresholds' starting values in glibc


def _libc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


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
