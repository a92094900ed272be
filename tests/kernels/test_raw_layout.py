"""Kernels that read arrays through raw pointers refuse arrays they would misread: at the Python wrapper
(every argument of every raw kernel) and, for direct callers of the intrinsics, at Numba typing time."""
import numpy as np
import pytest
from numba.core.errors import TypingError

from witnp import kernels as K
from witnp.kernels import LANES, at_b
from witnp.kernels._jit import Kernel
from witnp.kernels.simd.tile import rows_fma

RAW = sorted((name for name in dir(K) if isinstance(getattr(K, name), Kernel) and getattr(K, name).raw))


def test_the_raw_kernels_are_marked():
    """Every kernel built on the tiles, gathers or register transposes is marked raw."""
    assert {"conv_rows", "conv_dw_rows", "at_b", "wide_conv", "wide_dw", "quantize_wide", "wide_conv_rq",
            "wide_backward", "gru_forward", "gru_backward", "gru_q_forward", "gru_q_backward", "quantize_nhwc",
            "requant_nchw", "input_grad_nhwc", "grad_to_nhwc"} <= set(RAW)


@pytest.mark.parametrize("name", RAW)
def test_every_argument_of_a_raw_kernel_refuses_a_strided_array(name):
    kern = getattr(K, name)
    strided = np.zeros(64, np.float32)[::2]
    transposed = np.zeros((4, 6), np.float32).T
    for i, arg in enumerate(kern._arg_names):
        for bad in (strided, transposed):
            args = [0] * len(kern._arg_names)
            args[i] = bad
            with pytest.raises(ValueError, match=f"{name}: argument {arg} is a non-contiguous"):
                kern(*args)


def test_at_b_strided_a_is_refused_and_an_offset_view_is_right():
    """The review's case: at_b on a strided A returned wrong values silently."""
    rng = np.random.default_rng(1)
    A = rng.integers(-9, 10, (40, 6)).astype(np.float32)
    B = rng.integers(-9, 10, (40, LANES)).astype(np.float32)
    C = np.zeros((3, LANES), np.float32)
    wide = np.zeros((40, 12), np.float32)
    wide[:, ::2] = A
    with pytest.raises(ValueError, match="argument A is a non-contiguous"):
        at_b(wide[:, ::2].reshape(-1), 0, 6, 3, 40, B.ravel(), 0, LANES, C)  # reshape of a strided view: a view
    buf = np.zeros(A.size + 5, np.float32)
    buf[5:] = A.ravel()
    at_b(buf[5:], 1, 6, 3, 40, B.ravel(), 0, LANES, C)  # offset but contiguous: read right
    np.testing.assert_array_equal(C, A[:, 1:4].T @ B)


def test_the_intrinsic_itself_refuses_a_strided_view_at_typing_time():
    a = np.zeros(64, np.float32)
    b = np.zeros(64 * LANES, np.float32)
    c = np.zeros(4 * LANES, np.float32)
    one = np.zeros(1, np.int64)
    with pytest.raises(TypingError, match="reads raw memory and takes only 1-D C-contiguous"):
        rows_fma(1, LANES, a[::2], 0, 1, (one, 1, 1, 1), b, 0, LANES, c, 0, LANES, False)
