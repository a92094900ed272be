"""witnp.memory: freed blocks stay in the process, so a second allocation faults in no new pages."""
import platform
import subprocess
import sys

import numpy as np
import pytest

import witnp as wn
from witnp import memory

GLIBC = platform.libc_ver()[0] == "glibc"

# Allocate, touch and free a 20 MiB block, then count the page faults of doing it again. glibc by default
# maps such a block with mmap and unmaps it on free, so the second one faults in every page again.
PROBE = """
import resource, sys
import numpy as np
import witnp
if sys.argv[1] == "keep":
    assert witnp.keep_freed_memory()
def step():
    a = np.empty(5 << 20, np.float32)
    a.fill(1.0)
    del a
step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_reuses_pages():
    default, kept = _faults("default"), _faults("keep")
    assert default > 0  # the probe sees glibc's fresh pages: otherwise this test could not fail
    assert kept < default / 10


@pytest.mark.parametrize("kw, msg", [(dict(mmap_threshold=64 << 20), "at most"),
                                     (dict(trim_threshold=0), "positive int"),
                                     (dict(mmap_threshold=True), "positive int")])
def test_keep_freed_memory_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        wn.keep_freed_memory(**kw)


@pytest.mark.skipif(not GLIBC, reason="mallopt thresholds are glibc's")
def test_keep_freed_memory_on_off_accepted():
    try:
        assert wn.keep_freed_memory(False) is True
    finally:
        assert wn.keep_freed_memory() is True


def test_keep_freed_memory_other_libc_is_a_no_op(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert wn.keep_freed_memory() is False


@pytest.mark.parametrize("shape, dtype", [((32768, 32), np.float32), ((4, 64, 65), np.uint8), (70000, np.int8),
                                          ((2, 3), np.float64), ((0, 5), np.float32)])
def test_empty_shape_dtype_alignment(shape, dtype):
    a = memory.empty(shape, dtype)
    assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 16 == 0
    if a.nbytes >= 64 << 10:
        assert a.ctypes.data % 64 == 0
    a[...] = 1  # the whole extent is writable memory of its own
    assert memory.zeros(shape, dtype).sum() == 0


def test_empty_consecutive_arrays_get_different_colours():
    # the case it exists for: equal power-of-two blocks allocated one after the other
    arrs = [memory.empty((32768, 32)) for _ in range(64)]
    colours = [a.ctypes.data % 4096 for a in arrs]
    for c0, c1 in zip(colours, colours[1:]):
        d = (c1 - c0) % 4096
        assert 1024 <= d <= 3072
    assert len(set(colours)) == 64
