"""Convolution kernels: direct channels-last products (`direct`), channels-first stride-1 planes (`wide`,
and `wide_fused` with the quantization fused in), im2row/row2im (`im2row`) and weight gradients (`wgrad`)."""
