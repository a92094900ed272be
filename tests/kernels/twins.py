"""The serial/parallel twin check shared by the kernel tests."""
import numpy as np

from witnp import kernels as K
from witnp.kernels._jit import Kernel

KERNELS = [getattr(K, n) for n in dir(K) if isinstance(getattr(K, n), Kernel)]


def assert_parallel_equals_serial(run):
    """run() -> a tuple of arrays, computed once with the serial twins and once with every kernel call
    taking its parallel twin (threshold 0); the two must agree bit for bit, and the second run must have
    called at least one parallel twin (else the comparison proves nothing)."""
    serial = run()
    before = sum(k.parallel_calls for k in KERNELS)
    old = K.set_parallel_threshold(0)
    try:
        parallel = run()
    finally:
        K.set_parallel_threshold(old)
    assert sum(k.parallel_calls for k in KERNELS) > before, "no parallel twin ran"
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
