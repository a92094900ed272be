"""The layer protocol shared by every witnp layer, and the input checks that name what was wrong.

A layer owns ``params`` (trainable float32 arrays), ``grads`` (same keys; backward ADDS into them),
``stats`` (io_max and other saved, non-trainable state) and a frozen ``config``.
``forward(x, *, train, rng=None)`` returns ``(y, ctx)`` with everything backward needs;
``backward(dy, ctx)`` returns dx. Nothing forward-specific is kept on ``self``, so a cell can run T times
before any backward and shared weights accumulate their gradients for free.
"""
from __future__ import annotations

import functools
import inspect
from typing import Iterator, Optional, Tuple

import numpy as np

from ..config import LayerConfig, get_default_config
from ..errors import NonFiniteError

__all__ = ["Layer", "check_array", "check_grad", "check_pair", "check_finite", "check_flag"]


def _owner(layer) -> str:
    return layer if isinstance(layer, str) else type(layer).__name__


def check_array(layer, arg: str, x, *, last: Optional[int] = None, ndim: Optional[int] = None,
                min_ndim: int = 1, what: str = "") -> np.ndarray:
    """`x` as a float32 C-contiguous array, or a TypeError/ValueError naming layer, argument and expectation.

    Floating inputs of any precision are accepted and converted to float32 (the chip's reference computes
    in float32); integer, boolean, complex and object arrays are refused. `last` fixes the size of the last
    axis, `ndim` the exact rank, `min_ndim` the least rank; `what` describes the expected layout.
    NaN and inf are refused here for float paths; quantized paths count them inside their kernels.
    """
    name = _owner(layer)
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: {arg} has dtype {a.dtype}; expected a floating-point array (float32)")
    want = what or (f"(..., {last})" if last is not None else f"{min_ndim}+ dimensions")
    if (ndim is not None and a.ndim != ndim) or a.ndim < min_ndim or (last is not None and a.shape[-1] != last):
        raise ValueError(f"{name}: {arg} has shape {a.shape}; expected {want}")
    return np.ascontiguousarray(a, dtype=np.float32)


def check_flag(layer, arg: str, v) -> bool:
    """A True/False argument (numpy bools too); TypeError naming layer and argument for anything else
    ("yes", 1, None would otherwise be read by truthiness)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{_owner(layer)}: {arg}={v!r}; expected True or False")
    return bool(v)


def check_finite(layer, arg: str, a: np.ndarray) -> None:
    """ValueError naming layer and argument when `a` holds NaN or inf."""
    if not np.isfinite(a).all():
        n = int((~np.isfinite(a)).sum())
        raise NonFiniteError(f"{_owner(layer)}: {arg} contains {n} NaN or inf value(s); expected finite numbers")


def check_pair(layer, name: str, v, minimum: int) -> Tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair; ValueError naming layer and argument otherwise."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(t) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < minimum for e in t):
        raise ValueError(f"{_owner(layer)}: {name}={v!r}; expected an integer >= {minimum} or a pair of them")
    return int(t[0]), int(t[1])


def check_grad(layer, dy, shape: Tuple[int, ...], arg: str = "dy", finite: bool = True) -> np.ndarray:
    """The upstream gradient as float32 of exactly `shape` (the forward output's); finite unless the caller
    checks that itself (`finite=False`: the quantized kernels count NaN/inf in the pass they make anyway)."""
    g = check_array(layer, arg, dy, min_ndim=0, what=f"shape {tuple(shape)} (the forward output's)")
    if g.shape != tuple(shape):
        raise ValueError(f"{_owner(layer)}: {arg} has shape {g.shape}; expected {tuple(shape)} "
                         f"(the forward output's)")
    if finite:
        check_finite(layer, arg, g)
    return g


_NOT_ARCH = ("self", "config", "layer_config", "rng")


def _record_init_args(cls):
    """Wrap cls.__init__ so each instance remembers the arguments it was built with, per class: the
    architecture of a saved model is these arguments (`witnp.layers.registry.layer_spec`)."""
    orig = cls.__dict__.get("__init__")
    if orig is None:
        return
    sig = inspect.signature(orig)

    @functools.wraps(orig)
    def __init__(self, *args, **kwargs):
        rec = self.__dict__.setdefault("_init_args", {})
        if cls not in rec:
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            out = {}
            for name, value in bound.arguments.items():
                kind = sig.parameters[name].kind
                if name in _NOT_ARCH:
                    continue
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    out["*" + name] = tuple(value)
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    out.update(value)
                else:
                    out[name] = value
            rec[cls] = out
        orig(self, *args, **kwargs)

    cls.__init__ = __init__


class Layer:
    """Base class: parameter/gradient/stat dictionaries and the training-mode hooks."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _record_init_args(cls)

    def __init__(self, config: Optional[LayerConfig] = None):
        if config is None:
            config = get_default_config()
        if not isinstance(config, LayerConfig):
            raise TypeError(f"{type(self).__name__}: config must be a witnp.LayerConfig, "
                            f"got {type(config).__name__}")
        self.config = config
        self.params: dict = {}
        self.grads: dict = {}
        self.stats: dict = {}

    def _add_param(self, name: str, value: np.ndarray) -> None:
        self.params[name] = np.ascontiguousarray(value, dtype=np.float32)
        self.grads[name] = np.zeros_like(self.params[name])

    # ----------------------------------------------------------------- protocol
    def forward(self, x, *, train: bool = False, rng=None):  # pragma: no cover - interface
        """Returns ``(y, ctx)``."""
        raise NotImplementedError

    def backward(self, dy, ctx):  # pragma: no cover - interface
        """Returns dx and adds parameter gradients into ``grads``."""
        raise NotImplementedError

    def __call__(self, x, **kw):
        """Inference shorthand: ``forward(x, train=False)[0]``."""
        return self.forward(x, train=False, **kw)[0]

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g[...] = 0

    def begin_epoch(self) -> None:
        """The vendor's module.train() reset (chip.md §5); no-op for layers without auto-scale state."""

    def named_params(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        """(dotted name, float32 array) of every trainable parameter."""
        for k, v in self.params.items():
            yield prefix + k, v

    def named_grads(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        """(dotted name, gradient array), the same names as `named_params`."""
        for k, v in self.grads.items():
            yield prefix + k, v

    def named_stats(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        """(dotted name, array) of the saved non-trainable state (io_max, running statistics)."""
        for k, v in self.stats.items():
            yield prefix + k, v

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self) -> str:
        return ""
