"""Vendor-compatible names for people moving over from witin_nn: ``WitinLinear(..., layer_config=cfg)``.

They are the witnp layers under the vendor's class names, taking the vendor's ``layer_config=`` keyword: the
array layers, ``WitinGruCell`` (named by the vendor's manual, absent from its 0.1.3 package; witnp's GRUCell,
docs/gru.md), and the digital ops under the names of the vendor's test vectors (``WitinElementAdd`` for Add,
``WitinElementMul``, ``WitinElementDivide``, ``WitinGELU``, ``WitinSigmoid``, ``WitinTanh``, ``WitinPReLU``,
``WitinSqrt``, ``WitinMean``, ``WitinCat``, ``WitinBatchNorm2d``).
"""
from ..config import HandleNegInType, LayerConfig, NoiseModel
from .conv import Conv2d, ConvTranspose2d
from .digital import GELU, Add, Cat, Divide, Mean, Mul, PReLU, Sigmoid, Sqrt, Tanh
from .gru import GRUCell
from .linear import Linear
from .norm import BatchNorm2d

__all__ = ["WitinLinear", "WitinConv2d", "WitinConvTranspose2d", "WitinGruCell", "WitinElementAdd", "WitinElementMul",
           "WitinElementDivide", "WitinGELU", "WitinSigmoid", "WitinTanh", "WitinPReLU", "WitinSqrt", "WitinMean",
           "WitinCat", "WitinBatchNorm2d", "LayerConfig", "HandleNegInType", "NoiseModel"]


def _vendor(cls, name=None):
    class Witin(cls):
        __doc__ = f"witin_nn-compatible alias of witnp.{cls.__name__}: takes ``layer_config=`` for ``config=``."

        def __init__(self, *args, layer_config=None, config=None, **kw):
            if layer_config is not None and config is not None:
                raise TypeError(f"Witin{cls.__name__}: give layer_config or config, not both")
            super().__init__(*args, config=layer_config if layer_config is not None else config, **kw)

    Witin.__name__ = Witin.__qualname__ = name or "Witin" + cls.__name__
    return Witin


WitinLinear = _vendor(Linear)
WitinConv2d = _vendor(Conv2d)
WitinConvTranspose2d = _vendor(ConvTranspose2d)
WitinGruCell = _vendor(GRUCell, "WitinGruCell")
WitinElementAdd = _vendor(Add, "WitinElementAdd")
WitinElementMul = _vendor(Mul, "WitinElementMul")
WitinElementDivide = _vendor(Divide, "WitinElementDivide")
WitinGELU = _vendor(GELU)
WitinSigmoid = _vendor(Sigmoid)
WitinTanh = _vendor(Tanh)
WitinPReLU = _vendor(PReLU)
WitinSqrt = _vendor(Sqrt)
WitinMean = _vendor(Mean)
WitinCat = _vendor(Cat)
WitinBatchNorm2d = _vendor(BatchNorm2d)
