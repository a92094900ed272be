"""Shared helpers of the benchmarks: thread pinning before NumPy loads, medians, worker subprocesses."""
import json
import os
import subprocess
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def median_ms(fn, repeat=30, warmup=3, min_time=0.5):
    """Median wall time of fn() in milliseconds (at least `repeat` runs and `min_time` seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def run_worker(script, args, threads):
    """Run `script args` in a fresh interpreter pinned to `threads` threads; returns its JSON output."""
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    out = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved(script, sides, threads, rounds):
    """Run each side's worker `rounds` times, alternating sides, and keep the median of each figure.

    Alternating spreads slow spells of a shared machine over both sides instead of one.
    sides: {name: [args]}. Returns {name: {key: median value}}.
    """
    runs = {name: [] for name in sides}
    for _ in range(rounds):
        for name, args in sides.items():
            runs[name].append(run_worker(script, args, threads))
    out = {}
    for name, rs in runs.items():
        out[name] = {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in rs[0]}
    return out


def torch_available():
    """True when torch can be imported here (checked without importing it into this process)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None
