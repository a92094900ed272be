"""Where a cold `witnp train` spends its compile time: every Numba compilation of the run, from an empty cache.

    python bench/bench_compile.py [--top 25] [-- TRAIN ARGS...]    e.g. -- --config examples/gru_digits_rows.toml

Runs `witnp train` in this process with NUMBA_CACHE_DIR pointed at a new empty folder (set before Numba is
imported) and Numba's "numba:compile" events recorded: the wall time of the run, the time spent compiling
(top-level compilations only; a kernel's time includes the helpers compiled for it), the slowest
compilations, and every function compiled more than once with its signatures. A helper compiled twice is
usually a literal argument (`1`, `0`, `True`: a type of its own in Numba) or an array of another layout or
dimension; `tests/kernels/test_signatures.py` keeps literals away from the shared tile helpers. Not a test.
"""
import argparse
import collections
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_line  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=25, help="slowest compilations listed")
    ap.add_argument("train_args", nargs="*", help="arguments of witnp train (after --)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba-cache")
        from numba.core import event

        records, starts = [], []

        class Listener(event.Listener):
            def on_start(self, ev):
                starts.append(time.perf_counter())

            def on_end(self, ev):
                t0 = starts.pop()
                disp = ev.data.get("dispatcher")
                fn = getattr(disp, "py_func", None)
                name = f"{fn.__module__}.{fn.__qualname__}" if fn is not None else str(disp)
                records.append((time.perf_counter() - t0, len(starts), name, str(ev.data.get("args", ""))))

        event.register("numba:compile", Listener())
        from witnp.cli.main import main as witnp_main

        print(machine_line())
        t0 = time.perf_counter()
        try:
            witnp_main(["train", "--out", os.path.join(tmp, "run"), "--no-progress"] + a.train_args,
                       standalone_mode=False)
        except SystemExit as e:
            if e.code:
                raise
        wall = time.perf_counter() - t0
    top = [r for r in records if r[1] == 0]
    print(f"\nwitnp train {' '.join(a.train_args)}: {wall:.1f} s wall, {sum(r[0] for r in top):.1f} s compiling "
          f"({len(top)} kernels, {len(records)} compilations with their helpers)")
    print("\nslowest compilations (s; depth 0 = a kernel called from Python):")
    for r in sorted(records, reverse=True)[:a.top]:
        print(f"{r[0]:7.2f}  depth {r[1]}  {r[2]}")
    count = collections.Counter(r[2] for r in records if not r[2].startswith("numba."))
    twice = sorted(n for n, c in count.items() if c > 1)
    print("\ncompiled more than once:" + ("" if twice else " none"))
    for n in twice:
        for r in records:
            if r[2] == n:
                print(f"{r[0]:7.2f}  {n}{r[3][:200]}")


if __name__ == "__main__":
    main()
