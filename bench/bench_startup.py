"""Cold and warm start of witnp as a new user meets it: a fresh virtual environment, a regular (non-editable)
install, an empty Numba cache. Times `witnp --help`, the default `witnp train` and the GRU example, each
first cold (every kernel compiles) and then warm (the on-disk cache serves them).

    python bench/bench_startup.py [--epochs 1] [--read-only]

The install is non-editable, so the package lands in site-packages; the Numba cache then goes where Numba puts
it for that location (next to the sources when writable, else the user-wide cache): NUMBA_CACHE_DIR points each
command's two runs at a folder of its own, empty before the first, so that "cold" really is cold.
--read-only runs every command with the installed package mounted read-only (a private bind mount through
`unshare -m`: Linux, as root or with user namespaces) and no NUMBA_CACHE_DIR, as on a system or image install:
the kernels then cache in the user's folder ($XDG_CACHE_HOME/numba, a fresh one per command). Not a timed
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


def read_only(path):
    """A wrapper running a command with `path` bind-mounted read-only in a private mount namespace."""
    def wrap(cmd):
        return ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && '
                'shift && exec "$@"', "sh", path] + cmd
    return wrap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per stage (default: the configs' own)")
    ap.add_argument("--read-only", action="store_true", help="run with the installed package mounted read-only")
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
        site = subprocess.run([py, "-c", "import os, witnp; print(os.path.dirname(witnp.__file__))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for i, (name, cmd) in enumerate(rows):  # each command cold from its own empty cache, then warm
            if a.read_only:
                env = {k: v for k, v in base.items() if k != "NUMBA_CACHE_DIR"}
                env["XDG_CACHE_HOME"] = os.path.join(tmp, f"user-cache-{i}")
                wrap = read_only(site)
            else:
                env, wrap = dict(base, NUMBA_CACHE_DIR=os.path.join(tmp, f"numba-cache-{i}")), list
            cold = timed(wrap(cmd("cold")), env, work)
            warm = timed(wrap(cmd("warm")), env, work)
            print(f"{name:30s} {cold:8.1f} {warm:8.1f}")
        print("(cold: the first run with an empty Numba cache, compiling what the command uses; warm: the same "
              "command again" + ("; the package mounted read-only, the cache in $XDG_CACHE_HOME/numba)"
                                 if a.read_only else ")"))


if __name__ == "__main__":
    main()
