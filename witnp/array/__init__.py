"""The array's arithmetic: what one compute-in-memory array computes, forward and straight-through backward
(chip.md §2-§7), on NumPy and the Numba kernels.

    matrix.py   the array as a matrix operation (Linear, Conv2d's to_linear form, the GRU's arrays)
    conv/       the convolution on the array: geometry and products, its two layouts, the quantized layer
    gru.py      the quantized GRU's three arrays (docs/gru.md)

The layers (`witnp.layers`) own parameters and configs and call these functions; nothing here keeps state.
"""
