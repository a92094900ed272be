"""witnp layers: one file per family, all with the forward/ctx/backward protocol of `base.Layer`."""
from .base import Layer
from .linear import ArrayLayer, Linear

__all__ = ["Layer", "ArrayLayer", "Linear"]
