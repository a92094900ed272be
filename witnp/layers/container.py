"""Models built from layers, with the same forward/ctx/backward protocol: Sequential, Residual, Branches.

Parameters get stable dotted names from the children's names ("0.weight", "encoder.conv1.weight");
`begin_epoch`, `zero_grad` and the `train=` flag of forward reach every layer. A model's `params()` and
`grads()` are dicts of those names (a leaf layer's `params` is its own dict of arrays).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Tuple

import numpy as np

from .base import Layer
from .digital import Add, Cat

__all__ = ["Model", "Sequential", "Residual", "Branches", "walk", "units"]


def walk(layer, prefix: str = "") -> Iterator[Tuple[str, Layer]]:
    """Every leaf layer under `layer` with its dotted name ("" for a lone leaf)."""
    if isinstance(layer, Model):
        for name, child in layer.children.items():
            yield from walk(child, f"{prefix}{name}.")
    else:
        yield prefix[:-1], layer


class Model(Layer):
    """A layer made of named children; subclasses define forward/backward over them."""

    def __init__(self, children):
        self.children = OrderedDict()
        for name, child in children:
            if not isinstance(child, Layer):
                raise TypeError(f"{type(self).__name__}: child {name!r} is a {type(child).__name__}; expected a "
                                f"witnp layer")
            if not name or "." in name:
                raise ValueError(f"{type(self).__name__}: child name {name!r} must be non-empty without dots")
            self.children[name] = child
        self.config = None
        self.stats = {}

    def named_params(self, prefix: str = ""):
        for name, child in self.children.items():
            yield from child.named_params(f"{prefix}{name}.")

    def named_grads(self, prefix: str = ""):
        for name, child in self.children.items():
            yield from child.named_grads(f"{prefix}{name}.")

    def named_stats(self, prefix: str = ""):
        for name, child in self.children.items():
            yield from child.named_stats(f"{prefix}{name}.")

    def params(self) -> dict:
        """{dotted name: float32 array}, in a stable order."""
        return dict(self.named_params())

    def grads(self) -> dict:
        return dict(self.named_grads())

    def zero_grad(self) -> None:
        for child in self.children.values():
            child.zero_grad()

    def begin_epoch(self) -> None:
        for child in self.children.values():
            child.begin_epoch()

    def __getitem__(self, key):
        return self.children[str(key)] if not isinstance(key, str) else self.children[key]

    def __len__(self):
        return len(self.children)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.children.items())


class Sequential(Model):
    """Layers applied in order. ``Sequential(a, b)`` names them "0", "1"; ``Sequential(OrderedDict(...))`` or
    keyword arguments give names."""

    def __init__(self, *layers, **named):
        if len(layers) == 1 and isinstance(layers[0], (dict, OrderedDict)):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        super().__init__(items + list(named.items()))

    def forward(self, x, *, train: bool = False, rng=None):
        ctxs = []
        for child in self.children.values():
            x, c = child.forward(x, train=train, rng=rng)
            ctxs.append(c)
        return x, ctxs

    def backward(self, dy, ctx):
        for child, c in zip(reversed(list(self.children.values())), reversed(ctx)):
            dy = child.backward(dy, c)
        return dy


class Residual(Model):
    """y = merge((body(x), shortcut(x))): a residual block; shortcut None is the identity, merge an `Add`
    (quantized with its own config when the model is quantized)."""

    def __init__(self, body: Layer, shortcut: Layer = None, merge: Layer = None):
        items = [("body", body)] + ([("shortcut", shortcut)] if shortcut is not None else []) + [
            ("merge", merge if merge is not None else Add())]
        super().__init__(items)

    def forward(self, x, *, train: bool = False, rng=None):
        a, ca = self.children["body"].forward(x, train=train, rng=rng)
        sc = self.children.get("shortcut")
        b, cb = sc.forward(x, train=train, rng=rng) if sc is not None else (x, None)
        y, cm = self.children["merge"].forward((a, b), train=train, rng=rng)
        return y, (ca, cb, cm)

    def backward(self, dy, ctx):
        ca, cb, cm = ctx
        ga, gb = self.children["merge"].backward(dy, cm)
        dx = self.children["body"].backward(ga, ca)
        sc = self.children.get("shortcut")
        return dx + (sc.backward(gb, cb) if sc is not None else gb)


class Branches(Model):
    """y = merge((path_1(x), ..., path_k(x))): parallel paths on one input, merged by a two-or-more-input op
    (default `Cat(dim=1)`, channel concatenation)."""

    def __init__(self, *paths: Layer, merge: Layer = None):
        if len(paths) < 2:
            raise ValueError(f"Branches: expected at least two paths, got {len(paths)}")
        super().__init__([(str(i), p) for i, p in enumerate(paths)] + [("merge", merge if merge is not None
                                                                        else Cat(dim=1))])

    def forward(self, x, *, train: bool = False, rng=None):
        outs, ctxs = [], []
        for name, p in self.children.items():
            if name != "merge":
                o, c = p.forward(x, train=train, rng=rng)
                outs.append(o)
                ctxs.append(c)
        y, cm = self.children["merge"].forward(tuple(outs), train=train, rng=rng)
        return y, (ctxs, cm)

    def backward(self, dy, ctx):
        ctxs, cm = ctx
        gs = self.children["merge"].backward(dy, cm)
        paths = [p for n, p in self.children.items() if n != "merge"]
        dx = None
        for p, g, c in zip(paths, gs, ctxs):
            d = p.backward(g, c)
            dx = d if dx is None else dx + d
        return np.asarray(dx, np.float32)


def units(model, prefix: str = ""):
    """[(dotted name, layer)]: Sequential chains flattened, every other layer (a leaf, a Residual or Branches
    block) one unit."""
    if isinstance(model, Sequential):
        out = []
        for name, child in model.children.items():
            out += units(child, f"{prefix}{name}.")
        return out
    return [(prefix[:-1] or "-", model)]
