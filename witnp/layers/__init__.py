"""witnp layers: one file per family, all with the forward/ctx/backward protocol of `base.Layer`."""
from .base import Layer
from .container import Branches, Model, Residual, Sequential, walk
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .gru import GRU, GRUCell
from .digital import GELU, Add, Cat, DigitalOp, Divide, Mean, Mul, PReLU, ReLU, Sigmoid, Sqrt, Tanh
from .linear import ArrayLayer, Linear
from .norm import BatchNorm1d, BatchNorm2d
from .shape import AvgPool2d, Dropout, Flatten, MaxPool2d, Reshape

__all__ = ["Layer", "ArrayLayer", "Linear", "Conv1d", "Conv2d", "ConvTranspose2d", "DigitalOp", "ReLU", "GELU", "Sigmoid",
           "Tanh", "PReLU", "Sqrt", "Mean", "Add", "Mul", "Divide", "Cat", "BatchNorm1d", "BatchNorm2d", "Flatten",
           "Reshape", "Dropout", "MaxPool2d", "AvgPool2d", "GRU", "GRUCell", "Model", "Sequential", "Residual", "Branches", "walk"]
