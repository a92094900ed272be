"""What the serial/parallel twins are: every kernel compiled both ways, and which ones have no parallel loop
(their parallel twin runs serially: a recurrence over time, or a sum over the batch in a fixed order)."""
import inspect

from witnp import kernels as K
from witnp.kernels._jit import Kernel

KERNELS = {n: getattr(K, n) for n in dir(K) if isinstance(getattr(K, n), Kernel)}
# kept serial on purpose (see each kernel's docstring): results must not depend on the thread count
NO_PRANGE = {"conv_dw_rows", "gru_forward", "gru_backward", "gru_q_forward", "gru_q_backward"}


def test_each_kernel_has_a_parallel_and_a_serial_build():
    for name, k in KERNELS.items():
        assert k.parallel.targetoptions.get("parallel") is True, name
        assert not k.serial.targetoptions.get("parallel"), name


def test_the_kernels_without_a_parallel_loop_are_the_documented_ones():
    found = {n for n, k in KERNELS.items() if "prange" not in inspect.getsource(k.py_func)}
    assert found == NO_PRANGE
