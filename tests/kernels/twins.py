"""The serial/parallel twin check shared by the kernel tests."""
import numpy as np

from witnp import kernels as K


def assert_parallel_equals_serial(run):
    """run() -> a tuple of arrays, computed once with the serial twins and once with every kernel call
    taking its parallel twin (threshold 0); the two must agree bit for bit."""
    serial = run()
    old = K.set_parallel_threshold(0)
    try:
        parallel = run()
    finally:
        K.set_parallel_threshold(old)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
