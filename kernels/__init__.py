"""Numba kernels of witnp (installed as ``witnp.kernels``): pure functions on arrays, outputs passed in.

This package never imports ``witnp``. Folders: `simd` (width, LLVM-IR register tiles), `quant`, `conv`, `gru`;
at the top `layout` (NCHW <-> NHWC), `gemm` (exact BLAS products), `activations`, and `_jit` (the decorator).
The tests' NumPy twins (tests/kernels/reference.py) cover the quantization, im2row/row2im, activation and
exact-product kernels; the convolution and GRU kernels are tested against NumPy sums and float64 loops.
"""
from ._jit import Kernel, kernel, set_parallel_threshold
from .activations import gelu, gelu_grad
from .conv.im2row import im2row, row2im
from .conv.direct import conv_dw_rows, conv_rows
from .layout import grad_to_nhwc, nchw_to_nhwc, nchw_to_nhwc_f32, nhwc_to_nchw, pad_nhwc
from .gemm import exact_block, matmul_exact
from .gru.float_step import gru_backward, gru_forward
from .gru.quant_step import gru_q_backward, gru_q_forward
from .simd.tile import LANES, lanes_up, pad_cols
from .conv.wgrad import at_b
from .conv.wide import from_wide, grad_to_wide, to_wide, wide_conv, wide_dw
from .conv.wide_fused import quantize_wide, wide_backward, wide_conv_rq
from .quant.quantize import (combine_split, input_grad, input_grad_nhwc, quantize_bias, quantize_input,
                             quantize_weight, requant, requant_nchw, scale_masked)
from .quant.nhwc import quantize_nhwc

__all__ = ["LANES", "lanes_up", "pad_cols", "at_b", "Kernel", "kernel", "set_parallel_threshold", "exact_block", "matmul_exact", "quantize_input", "quantize_nhwc",
           "quantize_weight", "quantize_bias", "requant", "requant_nchw", "combine_split", "input_grad", "input_grad_nhwc", "scale_masked", "im2row", "row2im", "conv_rows", "conv_dw_rows", "nchw_to_nhwc", "nchw_to_nhwc_f32", "grad_to_nhwc", "nhwc_to_nchw", "pad_nhwc", "gelu", "gelu_grad", "gru_forward", "gru_backward", "gru_q_forward", "gru_q_backward",
           "wide_conv", "wide_dw", "to_wide", "from_wide", "grad_to_wide",
           "quantize_wide", "wide_conv_rq", "wide_backward"]
