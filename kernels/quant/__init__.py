"""Quantization kernels: input, weight and bias codes, requantization, straight-through masks
(`quantize`), and quantization straight into channels-last codes (`nhwc`)."""
