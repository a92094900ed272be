"""The on-disk kernel cache works when witnp is installed where it cannot write (a system site-packages, a
read-only image): Numba's in-tree cache (__pycache__ beside the kernel sources) is then unusable, and the
compiled kernels must land in the user's cache folder ($XDG_CACHE_HOME/numba) and be loaded from there by
the next process, instead of compiling again on every run.

The kernels folder is made read-only with a bind mount in a private mount namespace (`unshare -m`), which
changes nothing outside the probe's process; where that is not allowed (no root, no user namespaces) the
test says so and is skipped."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import witnp.kernels as K

KDIR = os.path.dirname(os.path.abspath(K.__file__))

_PROBE = """
import json, os
from witnp.kernels.simd.tile import _rows_next
assert _rows_next(7, 3) == 3
try:
    open(os.path.join({kdir!r}, "probe-write"), "w").close()
    writable = True
except OSError:
    writable = False
s = _rows_next.stats
print(json.dumps({{"writable": writable, "hits": sum(s.cache_hits.values()),
                  "misses": sum(s.cache_misses.values()), "path": _rows_next._cache.cache_path}}))
"""


def _read_only_run(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(_PROBE.format(kdir=KDIR))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && '
           'exec "$2" "$3"', "sh", KDIR, sys.executable, str(script)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_kernels_cache_in_the_user_folder_when_the_install_is_read_only(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here: cannot make the kernels folder read-only for one process")
    runs = []
    for _ in range(2):
        r = _read_only_run(tmp_path)
        if r.returncode != 0 and "mount" in r.stderr and not runs:
            pytest.skip(f"a private read-only bind mount is not allowed here: {r.stderr.strip()[:200]}")
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert not first["writable"] and not second["writable"]  # the probe really ran read-only
    assert first["path"].startswith(str(tmp_path / "xdg" / "numba"))  # the user's cache, not __pycache__
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0  # the next process loads it: no compile
