"""Losses with value and gradient: ``value, dpred = loss(pred, target)``.

CrossEntropyLoss: softmax cross-entropy with integer labels, optional label smoothing (torch's rule: the
target is (1 - ε)·onehot + ε/C), mean over the batch. MSELoss: mean of squared differences.
Values are Python floats computed in float64; gradients float32 of the prediction's shape.
"""
from __future__ import annotations

import numpy as np
from ..errors import NonFiniteError

__all__ = ["CrossEntropyLoss", "MSELoss"]


def _pred(owner, pred, ndim=None):
    a = np.asarray(pred)
    if a.dtype.kind != "f":
        raise TypeError(f"{owner}: pred has dtype {a.dtype}; expected a floating-point array")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{owner}: pred has shape {a.shape}; expected {ndim} dimensions (N, C)")
    if not np.isfinite(a).all():
        raise NonFiniteError(f"{owner}: pred contains NaN or inf; expected finite numbers")
    return a


class CrossEntropyLoss:
    """Softmax cross-entropy. pred (N, C) logits float; target (N,) integer labels in [0, C)."""

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing={label_smoothing!r}; expected a number in [0, 1]")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, pred, target):
        z = _pred("CrossEntropyLoss", pred, ndim=2).astype(np.float64)
        t = np.asarray(target)
        N, C = z.shape
        if t.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss: target has dtype {t.dtype}; expected integer class labels")
        if t.shape != (N,):
            raise ValueError(f"CrossEntropyLoss: target has shape {t.shape}; expected ({N},) for pred {z.shape}")
        if N and (t.min() < 0 or t.max() >= C):
            raise ValueError(f"CrossEntropyLoss: target labels span [{t.min()}, {t.max()}]; expected [0, {C - 1}]")
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        q = np.full((N, C), self.label_smoothing / C)
        q[np.arange(N), t] += 1.0 - self.label_smoothing
        value = float(-(q * logp).sum() / max(N, 1))
        grad = (np.exp(logp) - q) / max(N, 1)
        return value, grad.astype(np.float32)


class MSELoss:
    """Mean squared error. pred and target of the same shape."""

    def __call__(self, pred, target):
        p = _pred("MSELoss", pred).astype(np.float64)
        t = np.asarray(target, np.float64)
        if t.shape != p.shape:
            raise ValueError(f"MSELoss: target has shape {t.shape}; expected the shape of pred {p.shape}")
        d = p - t
        n = max(d.size, 1)
        return float((d * d).sum() / n), (2.0 * d / n).astype(np.float32)
