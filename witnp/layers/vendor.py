"""Vendor-compatible names for people moving over from witin_nn: ``WitinLinear(..., layer_config=cfg)``.

They are the witnp layers under the vendor's class names, taking the vendor's ``layer_config=`` keyword.
"""
from ..config import HandleNegInType, LayerConfig, NoiseModel
from .conv import Conv2d, ConvTranspose2d
from .linear import Linear

__all__ = ["WitinLinear", "WitinConv2d", "WitinConvTranspose2d", "LayerConfig", "HandleNegInType", "NoiseModel"]


def _vendor(cls):
    class Witin(cls):
        __doc__ = f"witin_nn-compatible alias of witnp.{cls.__name__}: takes ``layer_config=`` for ``config=``."

        def __init__(self, *args, layer_config=None, config=None, **kw):
            if layer_config is not None and config is not None:
                raise TypeError(f"Witin{cls.__name__}: give layer_config or config, not both")
            super().__init__(*args, config=layer_config if layer_config is not None else config, **kw)

    Witin.__name__ = Witin.__qualname__ = "Witin" + cls.__name__
    return Witin


WitinLinear = _vendor(Linear)
WitinConv2d = _vendor(Conv2d)
WitinConvTranspose2d = _vendor(ConvTranspose2d)
