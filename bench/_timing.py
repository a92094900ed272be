"""Shared helpers of the benchmarks: thread pinning before NumPy loads, medians, worker subprocesses."""
import argparse
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


def keep_freed_memory():
    """witnp.memory.keep_freed_memory, loaded from its file so the torch worker does not import witnp
    (and Numba's LLVM) beside torch. Both sides run with it: the comparison is of the code, not of malloc."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "witnp", "memory.py")
    spec = importlib.util.spec_from_file_location("_witnp_memory", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.keep_freed_memory()


def _command_line(repeat, rounds, rounds_help):
    """The benchmarks' shared options. In a worker (--worker), freed memory is kept first (`witnp.memory`, as
    the witnp command does) unless --glibc-malloc. Returns (args, thread counts 1 first, sides {name: worker
    args}: witnp, and torch when installed)."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts, 1 first")
    ap.add_argument("--repeat", type=int, default=repeat, help="timed runs per figure (at least)")
    ap.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    ap.add_argument("--worker", choices=["witnp", "torch"])
    ap.add_argument("--glibc-malloc", action="store_true",
                    help="leave glibc's malloc thresholds as they are in both workers (default: keep freed memory)")
    a = ap.parse_args()
    if a.worker and not a.glibc_malloc:
        keep_freed_memory()
    extra = ["--glibc-malloc"] if a.glibc_malloc else []
    sides = {s: ["--worker", s, "--repeat", str(a.repeat)] + extra
             for s in (("witnp", "torch") if torch_available() else ("witnp",))}
    return a, sorted({int(v) for v in a.threads.split(",")}), sides


def machine_line():
    """The CPU model, its SIMD flags (AVX, AVX2, FMA, AVX-512 ...) and the kernels' width: every figure a bench
    prints belongs to the machine this line names."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = sorted(fl for fl in flags if fl.startswith(("avx", "fma", "sse4")) or fl in ("f16c",))
    try:
        lanes = subprocess.run([sys.executable, "-c", "from witnp.kernels.simd import width; print(width.LANES)"],
                               capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        lanes = "?"
    return (f"machine: {model}, {os.cpu_count()} cores; SIMD flags: {' '.join(simd) or 'none seen'}; "
            f"witnp kernels: {lanes} float32 lanes" + (" (forced by WITNP_SIMD_LANES)" if os.environ.get(
                "WITNP_SIMD_LANES") else ""))


def _torch_hint(sides):
    if "torch" not in sides:
        print("(torch not installed: `pip install torch==2.13.0` for the side-by-side figures)")


def bench_main(script, witnp_worker, torch_worker, report, repeat=30):
    """Command line shared by the benchmarks: workers print JSON; the parent runs them per thread count,
    alternating sides over --rounds, and hands the medians to report(threads, witnp, torch or {})."""
    a, threads, sides = _command_line(repeat, 3, "worker runs per side, alternating; medians kept")
    if a.worker:
        print(json.dumps((witnp_worker if a.worker == "witnp" else torch_worker)(a.repeat)))
        return
    print(machine_line())
    for t in threads:
        res = interleaved(script, sides, t, a.rounds)
        print(f"\n== {t} thread(s): forward+backward, median ms ==")
        report(t, res["witnp"], res.get("torch", {}))
    _torch_hint(sides)


# ---- paired measurements: both sides' workers stay up and take turns, one figure at a time ----
#
# `interleaved` alternates whole worker runs, several seconds each; on this shared 2-core machine the speed
# swings within seconds, so a witnp figure and the torch figure it is divided by could come from different
# spells (the same ConvTranspose2d step measured 0.79x and 1.17x torch in two runs minutes apart). Here each
# side's worker is started once and kept; for every round and workload the parent asks one side, then the
# other (the order alternating by round), so the two figures of a ratio are taken about a second apart, and
# the ratio reported is the median of the per-round ratios.

SETTLE_S = 0.05  # pause between requests: a worker's BLAS / OpenMP threads spin a while after their last job


def serve(cases, repeat, warmup=3, min_time=0.3):
    """Worker side: cases {key: step function}. Prints one JSON line with the keys, then answers each key
    read from stdin with {"ms": median_ms of its step}; stops at end of input."""
    print(json.dumps({"keys": list(cases)}), flush=True)
    for line in sys.stdin:
        key = line.strip()
        if key:
            print(json.dumps({"ms": median_ms(cases[key], repeat, warmup, min_time)}), flush=True)


class _Worker:
    def __init__(self, script, args, threads):
        env = dict(os.environ)
        for v in THREAD_VARS:
            env[v] = str(threads)
        self.name = f"{os.path.basename(script)} {' '.join(args)}"
        self.p = subprocess.Popen([sys.executable, script, *args], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.keys = self._read()["keys"]

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            err = self.p.stderr.read()
            raise RuntimeError(f"{self.name} failed:\n{err[-2000:]}")
        return json.loads(line)

    def ms(self, key):
        self.p.stdin.write(key + "\n")
        return self._read()["ms"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def paired(script, sides, threads, rounds, pairs):
    """Start one worker per side (sides {name: [args]}), then for each round ask every key of every side in
    turn. pairs: {label: (side_a, key_a, side_b, key_b)}: ratios a/b taken within a round.
    Returns ({side: {key: median ms}}, {label: (median ratio, min, max)})."""
    workers = {name: _Worker(script, args, threads) for name, args in sides.items()}
    try:
        runs = {name: {k: [] for k in w.keys} for name, w in workers.items()}
        order = list(workers)
        keys = workers[order[0]].keys
        for r in range(rounds):
            for key in keys:
                for name in (order if r % 2 == 0 else order[::-1]):
                    if key in runs[name]:
                        time.sleep(SETTLE_S)
                        runs[name][key].append(workers[name].ms(key))
    finally:
        for w in workers.values():
            w.close()
    med = {name: {k: sorted(v)[len(v) // 2] for k, v in ks.items() if v} for name, ks in runs.items()}
    ratios = {}
    for label, (sa, ka, sb, kb) in pairs.items():
        if sa in runs and sb in runs and ka in runs[sa] and kb in runs[sb]:
            rs = sorted(a / b for a, b in zip(runs[sa][ka], runs[sb][kb]))
            ratios[label] = (rs[len(rs) // 2], rs[0], rs[-1])
    return med, ratios


def paired_main(script, cases, report, pairs, repeat=20):
    """Command line of a paired benchmark. cases(side) -> {key: step} runs in the worker (side "witnp" or
    "torch"); the parent calls report(threads, witnp medians, torch medians, ratios) per thread count, the
    ratios those of `pairs` (as in `paired`)."""
    a, threads, sides = _command_line(repeat, 7, "paired figures per workload; medians kept")
    if a.worker:
        serve(cases(a.worker), a.repeat)
        return
    print(machine_line())
    for t in threads:
        med, ratios = paired(script, sides, t, a.rounds, pairs)
        print(f"\n== {t} thread(s): forward+backward, median ms of {a.rounds} paired rounds ==")
        report(t, med["witnp"], med.get("torch", {}), ratios)
    _torch_hint(sides)
