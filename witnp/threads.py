"""How many threads witnp's work uses: BLAS (through threadpoolctl) and Numba's pool.

Default: 1. As issue #22 measured on a 2-core AVX2 EPYC: with OpenBLAS's default of one thread per
core, two witnp processes at once ran a float GRU step 3-5x slower (24-35 ms against 6-9 ms) than with one
BLAS thread each, because OpenBLAS's idle workers spin against the other process; on an idle machine the two
settings were equal. One thread is therefore never slower for the sweeps, parallel trainings and busy
machines witnp runs on; `witnp --threads N` (or WITNP_THREADS=N, or `set_threads(N)`) opts in to more for a
lone large-batch run. Numba's element-wise kernels stay serial unless `kernels.set_parallel_threshold` says
otherwise (kernels/_jit.py).
"""
from __future__ import annotations

import os
import sys

__all__ = ["set_threads", "default_threads", "ENV"]

ENV = "WITNP_THREADS"


def default_threads() -> int:
    """WITNP_THREADS when set (a positive integer), else 1."""
    v = os.environ.get(ENV, "").strip()
    if not v:
        return 1
    if not v.isdigit() or int(v) < 1:
        raise ValueError(f"{ENV}={v!r}: expected a positive integer (threads for BLAS and Numba)")
    return int(v)


def set_threads(n: int | None = None) -> int:
    """Limit BLAS (every BLAS library threadpoolctl finds loaded: numpy's OpenBLAS or MKL) and Numba to `n`
    threads (None: `default_threads()`). Returns n. Numba's pool is sized before numba is imported
    (NUMBA_NUM_THREADS) and set with numba.set_num_threads after, so calling this first costs no import."""
    n = default_threads() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads: n={n!r}; expected a positive integer")
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n, user_api="blas")
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    return n
