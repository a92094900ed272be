"""The architecture of a model as plain data, and back: `layer_spec(model)` -> dict, `build(spec)` -> model.

A leaf layer's spec is {"type": class name, "args": the constructor arguments it was built with (recorded by
`Layer`), "config": its LayerConfig as a dict}; a container's is {"type", "children": [[name, spec], ...]}.
Specs are JSON-serializable, so a saved model rebuilds with no user code.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..config import LayerConfig
from . import container, conv, digital, gru, linear, norm, shape
from .base import Layer

__all__ = ["LAYER_TYPES", "layer_spec", "build"]

LAYER_TYPES = {}
for _mod in (linear, conv, gru, digital, norm, shape, container):
    for _name in _mod.__all__:
        _obj = getattr(_mod, _name)
        if isinstance(_obj, type) and issubclass(_obj, Layer):
            LAYER_TYPES[_name] = _obj


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(e) for e in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def layer_spec(layer: Layer) -> dict:
    """JSON-serializable description of `layer` (and its children)."""
    if isinstance(layer, container.Model):
        return {"type": _registered(layer).__name__,
                "children": [[name, layer_spec(child)] for name, child in layer.children.items()]}
    cls = _registered(layer)
    own = next(layer._init_args[c] for c in cls.__mro__ if c in layer._init_args)  # nearest recorded __init__
    args = {k: _jsonable(v) for k, v in own.items()}
    return {"type": cls.__name__, "args": args, "config": layer.config.to_dict()}


def _registered(layer):
    for cls in type(layer).__mro__:
        if LAYER_TYPES.get(cls.__name__) is cls:
            return cls
    raise TypeError(f"{type(layer).__name__} is not a witnp layer type that can be saved")


def build(spec: dict) -> Layer:
    """Rebuild a layer or model from `layer_spec` output; unknown types are refused by name."""
    t = spec.get("type")
    if t not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {t!r}; expected one of {sorted(LAYER_TYPES)}")
    cls = LAYER_TYPES[t]
    if "children" in spec:
        kids = OrderedDict((name, build(s)) for name, s in spec["children"])
        if cls is container.Sequential:
            return container.Sequential(kids)
        if cls is container.Residual:
            return container.Residual(kids["body"], kids.get("shortcut"), kids["merge"])
        if cls is container.Branches:
            merge = kids.pop("merge")
            return container.Branches(*kids.values(), merge=merge)
        raise ValueError(f"cannot rebuild container type {t!r}")
    args = dict(spec.get("args", {}))
    star = [v for k, v in args.items() if k.startswith("*")]
    kw = {k: v for k, v in args.items() if not k.startswith("*")}
    config = LayerConfig.from_dict(spec["config"]) if spec.get("config") is not None else None
    return cls(*(star[0] if star else ()), config=config, **kw)
