"""witnp layers: one file per family, all with the forward/ctx/backward protocol of `base.Layer`."""
from .base import Layer
from .conv import Conv2d, ConvTranspose2d
from .linear import ArrayLayer, Linear

__all__ = ["Layer", "ArrayLayer", "Linear", "Conv2d", "ConvTranspose2d"]
