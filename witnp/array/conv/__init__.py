"""Conv2d and ConvTranspose2d on the array.

    ops.py        geometry, layout changes, float and exact integer products (im2row or direct)
    direct.py     direct channels-last products and gradients (no im2row matrix)
    wide.py       stride-1 Conv2d on channels-first "wide" planes: buffer sizes and tap tables (WidePlan)
    layouts.py    the two layouts a quantized conv runs in, and the choice between them
    quantized.py  the quantized Conv2d / ConvTranspose2d with to_linear off (chip.md §4)
"""
