"""The SIMD width: chosen per process (host or WITNP_SIMD_LANES), refused when impossible, and part of the
compiled kernels' cache key, so a binary of one width never runs in a process of the other."""
import json
import os
import subprocess
import sys

import pytest

from witnp.kernels.simd import width as simd
from witnp.kernels._jit import CACHE_TAG

OTHER = 8 if simd.LANES == 16 else 16

# Compiles rows_fma (and nothing it does not call) and reports its result and the cache's hits and misses.
_PROBE = """
import json, numpy as np
from witnp.kernels import simd
from witnp.kernels.simd.tile import rows_fma
L = simd.LANES
a = np.arange(3 * 5, dtype=np.float32).reshape(3, 5)
b = np.arange(5 * 2 * L, dtype=np.float32).reshape(5, 2 * L)
c = np.zeros((3, 2 * L), np.float32)
rows_fma(3, 2 * L, a.ravel(), 0, 5, (np.zeros(1, np.int64), 1, 1, 5), b.ravel(), 0, 2 * L, c.ravel(), 0, 2 * L, False)
assert (c == a @ b).all()
s = rows_fma.stats
print(json.dumps({"lanes": L, "hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}))
"""


def _run(code, lanes=None, cache_dir=None):
    env = dict(os.environ)
    env.pop(simd.ENV, None)
    if lanes is not None:
        env[simd.ENV] = str(lanes)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_host_width_is_the_default():
    if os.environ.get(simd.ENV):
        assert simd.LANES == int(os.environ[simd.ENV])
    else:
        assert simd.LANES == simd.host_lanes() in (8, 16)
    assert CACHE_TAG[1] == simd.LANES


@pytest.mark.parametrize("value", ["12", "avx2", "0", "-8"])
def test_impossible_width_is_refused_at_import(value):
    r = _run("import witnp.kernels", lanes=value)
    assert r.returncode != 0
    assert f"WITNP_SIMD_LANES={value!r}: expected 8" in r.stderr


def test_cache_never_serves_one_width_to_the_other(tmp_path):
    """One cache folder, three processes: 16 lanes compiles, 8 lanes must compile again (a hit would run
    16-lane code on 8-lane buffers), and 16 lanes then loads its own binary."""
    seen = []
    for lanes in (16, 8, 16):
        r = _run(_PROBE, lanes=lanes, cache_dir=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        seen.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert [s["lanes"] for s in seen] == [16, 8, 16]
    assert seen[0]["misses"] > 0 and seen[0]["hits"] == 0
    assert seen[1]["misses"] > 0 and seen[1]["hits"] == 0
    assert seen[2]["hits"] > 0 and seen[2]["misses"] == 0


@pytest.mark.skipif(bool(os.environ.get(simd.ENV)), reason="already a forced-width run (no recursion)")
def test_kernel_and_layer_suites_pass_on_the_other_width():
    """This host's suite runs its own width; the kernel, layer and golden tests run again here with the other
    one (8 lanes on an AVX-512 host, 16 on an AVX2 host), so every tile size, padding and fast path of both
    widths is exercised on any x86-64 machine."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **{simd.ENV: str(OTHER)})
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        os.path.join(here, "kernels"), os.path.join(here, "layers"),
                        os.path.join(here, "test_golden.py")],
                       env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{simd.ENV}={OTHER}:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    assert " passed" in r.stdout and " failed" not in r.stdout
