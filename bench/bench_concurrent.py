"""Two `witnp train` runs at once, as a sweep or two users on one machine run them: with witnp's default
threads (1) and with `--threads N` (N = the core count: OpenBLAS's own default). Prints the machine, each
setting's per-epoch times (median over both runs' epochs) and wall time, and the same run alone.

    python bench/bench_concurrent.py [--config examples/gru_digits_rows.toml] [--epochs 3] [--rounds 2]

Not a timed test: the figures are for the README and issue notes. The runs use their own run folders under a
temporary directory and the warm Numba cache (the first run compiles, so it is done once before timing).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_line  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(out, config, epochs, threads):
    cmd = [sys.executable, "-m", "witnp.cli.main"] + (["--threads", str(threads)] if threads else []) + [
        "train", "--out", out, "--no-progress", "--set", "noise_seeds=1"]
    if config:
        cmd += ["--config", config]
    for i in range(3):
        cmd += ["--set", f"stages.{i}.epochs={epochs}"]
    env = dict(os.environ)
    env.pop("WITNP_THREADS", None)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _epoch_seconds(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line)["seconds"] for line in f]


def run(tmp, tag, config, epochs, threads, n):
    outs = [os.path.join(tmp, f"{tag}{i}") for i in range(n)]
    t0 = time.perf_counter()
    ps = [_train(o, config, epochs, threads) for o in outs]
    for p in ps:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"witnp train failed:\n{err[-2000:]}")
    wall = time.perf_counter() - t0
    secs = [s for o in outs for s in _epoch_seconds(o)]
    return statistics.median(secs), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(ROOT, "examples", "gru_digits_rows.toml"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    cores = os.cpu_count()
    print(machine_line())
    print(f"config {os.path.relpath(a.config, ROOT)}, {a.epochs} epochs per stage, {a.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        run(tmp, "warm", a.config, 1, 1, 1)  # compiles the kernels once
        rows = {}
        for r in range(a.rounds):  # the settings alternate, so slow spells of the machine hit both
            for label, threads, n in [("alone, 1 thread", 1, 1), ("two at once, default (1 thread)", None, 2),
                                      (f"two at once, --threads {cores}", cores, 2)]:
                rows.setdefault(label, []).append(run(tmp, f"r{r}{threads}{n}", a.config, a.epochs, threads, n))
    print(f"{'setting':36s} {'epoch s (median)':>17s} {'wall s':>8s}   per round")
    for label, vals in rows.items():
        ep = statistics.median(v[0] for v in vals)
        wall = statistics.median(v[1] for v in vals)
        print(f"{label:36s} {ep:17.3f} {wall:8.2f}   " + ", ".join(f"{v[0]:.3f}/{v[1]:.1f}" for v in vals))


if __name__ == "__main__":
    main()
