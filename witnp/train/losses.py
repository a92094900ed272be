"""Losses with value and gradient: ``value, dpred = loss(pred, target)``.

CrossEntropyLoss: softmax cross-entropy with integer labels, optional label smoothing (torch's rule: the
target is (1 - ε)·onehot + ε/C), mean over the batch; per frame, pred (N, T, C) with labels (N, T), mean over
the frames. MSELoss: mean of squared differences. L1Loss: mean of absolute differences. SNRLoss: minus the
mean over examples of the signal-to-noise ratio in dB, 10·log10(Σ target² / Σ (target − pred)²): scale-aware
(a prediction at the wrong gain loses), unlike the scale-invariant SI-SNR.
Values are Python floats computed in float64; gradients float32 of the prediction's shape.
"""
from __future__ import annotations

import numpy as np
from ..errors import NonFiniteError

__all__ = ["CrossEntropyLoss", "MSELoss", "L1Loss", "SNRLoss", "LOSSES", "SNR_EPS", "loss_weight"]

SNR_EPS = 1e-8
"""Added to both energies of an SNR (loss and metric): a silent target and a perfect prediction stay finite."""


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
    """Softmax cross-entropy. pred (N, C) logits float, target (N,) integer labels in [0, C); or per frame,
    pred (N, T, C) and target (N, T): the mean over the N·T frames."""

    per = "row"  # the mean is over rows (examples, or frames): what a mean over batches weighs by

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing={label_smoothing!r}; expected a number in [0, 1]")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, pred, target):
        a = np.asarray(pred)
        if a.ndim == 3:  # per frame: the frames as the batch
            t3 = np.asarray(target)
            if t3.shape != a.shape[:2]:
                raise ValueError(f"CrossEntropyLoss: target has shape {t3.shape}; expected {a.shape[:2]} (a label per "
                                 f"frame) for pred {a.shape}")
            value, g = self(a.reshape(-1, a.shape[2]), t3.reshape(-1))
            return value, g.reshape(a.shape)
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

    per = "element"

    def __call__(self, pred, target):
        p, t = _pair("MSELoss", pred, target)
        d = p - t
        n = max(d.size, 1)
        return float((d * d).sum() / n), (2.0 * d / n).astype(np.float32)


def loss_weight(loss_fn, pred) -> int:
    """How many terms `loss_fn`'s mean over `pred` averages (its `per`: rows, elements or examples; a loss
    without `per` counts examples): the weight of one batch in a mean over batches of different shapes."""
    per = getattr(loss_fn, "per", "example")
    shape = np.shape(pred)
    if per == "element":
        return int(np.prod(shape))
    if per == "row":
        return int(np.prod(shape[:-1]))
    return int(shape[0]) if shape else 1


def _pair(owner, pred, target):
    p = _pred(owner, pred).astype(np.float64)
    t = np.asarray(target, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"{owner}: target has shape {t.shape}; expected the shape of pred {p.shape}")
    return p, t


class L1Loss:
    """Mean absolute error. pred and target of the same shape; the gradient at a zero difference is 0."""

    per = "element"

    def __call__(self, pred, target):
        p, t = _pair("L1Loss", pred, target)
        d = p - t
        n = max(d.size, 1)
        return float(np.abs(d).sum() / n), (np.sign(d) / n).astype(np.float32)


class SNRLoss:
    """-mean_i 10·log10((Σ t_i² + eps) / (Σ (t_i − p_i)² + eps)) over the N examples (each example's sums over
    all its values). pred and target (N, ...) of the same shape."""

    per = "example"

    def __call__(self, pred, target):
        p, t = _pair("SNRLoss", pred, target)
        n = max(p.shape[0], 1) if p.ndim else 1
        axes = tuple(range(1, p.ndim))
        d = t - p
        sig = (t * t).sum(axis=axes) + SNR_EPS
        err = (d * d).sum(axis=axes) + SNR_EPS
        value = float(-(10.0 * np.log10(sig / err)).sum() / n)
        k = 10.0 / np.log(10.0)
        grad = -k * 2.0 * d / err.reshape((-1,) + (1,) * (p.ndim - 1)) / n
        return value, grad.astype(np.float32)


LOSSES = {"cross_entropy": CrossEntropyLoss, "mse": MSELoss, "l1": L1Loss, "snr": SNRLoss}
"""The run config's `loss` names."""
