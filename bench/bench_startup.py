"""Cold and warm start of witnp as a new user meets it: a fresh virtual environment, a regular (non-editable)
install, an empty Numba cache. Times `witnp --help`, the default `witnp train` and the GRU example, each
first cold (every kernel compiles) and then warm (the on-disk cache serves them).

    python bench/bench_startup.py [--epochs 1]

The install is non-editable, so the package lands in site-packages; the Numba cache then goes where Numba puts
it for that location (next to the sources when writable, else the user-wide cache): NUMBA_CACHE_DIR points each
command's two runs at a folder of its own, empty before the first, so that "cold" really is cold. Not a timed
test.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_line  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, env, cwd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per stage (default: the configs' own)")
    a = ap.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        subprocess.run([py, "-m", "pip", "install", "-q", ROOT], check=True, capture_output=True)
        witnp = os.path.join(venv, "bin", "witnp")
        base = dict(os.environ)
        base.pop("VIRTUAL_ENV", None)
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        ep = [] if a.epochs is None else [x for i in range(3) for x in ("--set", f"stages.{i}.epochs={a.epochs}")]
        gru = os.path.join(ROOT, "examples", "gru_digits_rows.toml")
        rows = [("witnp --help", lambda k: [witnp, "--help"]),
                ("witnp train (default CNN)", lambda k: [witnp, "train", "--out", f"cnn{k}", "--no-progress"] + ep),
                ("witnp train (GRU example)", lambda k: [witnp, "train", "--config", gru, "--out", f"gru{k}",
                                                         "--no-progress"] + ep)]
        print(f"{'command':30s} {'cold s':>8s} {'warm s':>8s}")
        for i, (name, cmd) in enumerate(rows):  # each command cold from its own empty cache, then warm
            env = dict(base, NUMBA_CACHE_DIR=os.path.join(tmp, f"numba-cache-{i}"))
            cold = timed(cmd("cold"), env, work)
            warm = timed(cmd("warm"), env, work)
            print(f"{name:30s} {cold:8.1f} {warm:8.1f}")
        print("(cold: the first run with an empty Numba cache, compiling what the command uses; warm: the same "
              "command again)")


if __name__ == "__main__":
    main()
