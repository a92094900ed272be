"""What is learned: a task gives the loss, the metrics and the metric that picks the best model.

    classify  a label per example: y (N,) integers 0..K-1, the model's output (N, K) logits.
              Metrics: accuracy, macro_f1 (the mean of each class's F1 = 2TP / (2TP + FP + FN) over the
              classes that occur in the labels or the predictions); eval.json also gets the confusion matrix
              (`extras`: rows true class, columns predicted). Main metric: accuracy.
    frames    a label per time step (voice activity): y (N, T) integers, the output (N, T, K).
              Metrics: frame_accuracy and frame_f1 (macro F1) over every frame. Main: frame_accuracy.
    regress   a target array per example or per frame (denoising): y float of the output's shape.
              Metrics: mse; snr_db, the mean over examples of 10·log10(Σ y² / Σ (y − ŷ)²); psnr_db,
              10·log10(peak² / mse) with peak = max |y| of the split measured. Main: snr_db.

Losses by name (the run config's `loss`): cross_entropy (classify, frames; label_smoothing applies), mse,
l1, snr (regress; `losses.SNRLoss`). `task_of(y)` infers the task from the labels when a config does not
name it: integer (N,) classify, integer (N, T) frames, float regress.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .losses import LOSSES, SNR_EPS, CrossEntropyLoss

__all__ = ["Task", "TASKS", "task_of", "get_task", "main_metric", "MAIN_METRICS", "SHORT_NAMES", "format_metric",
           "SHARES"]


def _macro_f1(pred: np.ndarray, true: np.ndarray, k: int) -> float:
    cm = _confusion(pred, true, k)
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    seen = (cm.sum(0) + cm.sum(1)) > 0
    f1 = np.where(seen, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return float(f1[seen].mean()) if seen.any() else 0.0


def _confusion(pred: np.ndarray, true: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(true.astype(np.int64) * k + pred.astype(np.int64), minlength=k * k).reshape(k, k)


class Task:
    """The interface: name, main metric (and whether higher is better), losses, metrics, checks."""

    name = "task"
    main = "loss"
    higher_is_better = False
    losses: Tuple[str, ...] = ()

    def loss(self, name: Optional[str] = None, label_smoothing: float = 0.0):
        name = name or self.losses[0]
        if name not in self.losses:
            raise ValueError(f"task {self.name}: loss {name!r}; expected one of {list(self.losses)}")
        if label_smoothing and name != "cross_entropy":
            raise ValueError(f"task {self.name}: label_smoothing applies to cross_entropy, not to {name}")
        return CrossEntropyLoss(label_smoothing) if name == "cross_entropy" else LOSSES[name]()

    def metrics(self, pred: np.ndarray, y: np.ndarray) -> Dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def extras(self, pred: np.ndarray, y: np.ndarray) -> dict:
        """Non-scalar results for eval.json (none by default)."""
        return {}

    def metrics_groups(self, pairs) -> Dict[str, float]:
        """The metrics over batches of different lengths [(pred, y), ...] (variable-length data), equal to
        `metrics` over all of them at once: here the batches concatenated (a label per example)."""
        return self.metrics(*self._joined(pairs))

    def extras_groups(self, pairs) -> dict:
        return self.extras(*self._joined(pairs))

    @staticmethod
    def _joined(pairs):
        return np.concatenate([p for p, _ in pairs]), np.concatenate([y for _, y in pairs])

    def check_targets(self, y: np.ndarray, where: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def check_output(self, out_shape: tuple, y_shape: tuple, n_classes: Optional[int]) -> Optional[str]:
        """None when a model output of out_shape (batch first) fits targets of y_shape; else what is wrong."""
        raise NotImplementedError  # pragma: no cover - interface


class Classify(Task):
    name, main, higher_is_better, losses = "classify", "accuracy", True, ("cross_entropy",)

    def metrics(self, pred, y):
        p = pred.argmax(axis=-1)
        return {"accuracy": float((p == y).mean()), "macro_f1": _macro_f1(p, y, pred.shape[-1])}

    def extras(self, pred, y):
        return {"confusion": _confusion(pred.argmax(axis=-1), y, pred.shape[-1]).tolist()}

    def check_targets(self, y, where):
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise ValueError(f"{where}: task classify needs one integer label per example (N,); got {y.dtype} "
                             f"{y.shape}")

    def check_output(self, out_shape, y_shape, n_classes):
        if len(out_shape) != 2 or (n_classes is not None and out_shape[1] != n_classes):
            return (f"the model outputs shape {tuple(out_shape[1:])} per example; task classify with labels "
                    f"0..{(n_classes or 1) - 1} ({n_classes} classes) needs ({n_classes},) logits")
        return None


class Frames(Task):
    name, main, higher_is_better, losses = "frames", "frame_accuracy", True, ("cross_entropy",)

    def metrics(self, pred, y):
        p = pred.argmax(axis=-1).reshape(-1)
        t = y.reshape(-1)
        return {"frame_accuracy": float((p == t).mean()), "frame_f1": _macro_f1(p, t, pred.shape[-1])}

    def extras(self, pred, y):
        return {"confusion": _confusion(pred.argmax(axis=-1).reshape(-1), y.reshape(-1), pred.shape[-1]).tolist()}

    @staticmethod
    def _joined(pairs):  # every frame of every batch, as one sequence
        p = np.concatenate([p.reshape(-1, p.shape[-1]) for p, _ in pairs])
        return p[None], np.concatenate([y.reshape(-1) for _, y in pairs])[None]

    def check_targets(self, y, where):
        if y.dtype.kind not in "iu" or y.ndim != 2:
            raise ValueError(f"{where}: task frames needs an integer label per frame (N, T); got {y.dtype} {y.shape}")

    def check_output(self, out_shape, y_shape, n_classes):
        if len(out_shape) != 3 or out_shape[1] != y_shape[1] or (n_classes is not None and out_shape[2] != n_classes):
            return (f"the model outputs shape {tuple(out_shape[1:])} per example; task frames with {y_shape[1]} "
                    f"frames and labels 0..{(n_classes or 1) - 1} ({n_classes} classes) needs ({y_shape[1]}, "
                    f"{n_classes}): logits per frame (a GRU with return_sequences = true, then a Linear)")
        return None


class Regress(Task):
    name, main, higher_is_better, losses = "regress", "snr_db", True, ("mse", "l1", "snr")

    def metrics(self, pred, y):
        p, t = np.asarray(pred, np.float64), np.asarray(y, np.float64)
        d = t - p
        mse = float((d * d).mean())
        axes = tuple(range(1, t.ndim))
        snr = 10 * np.log10(((t * t).sum(axis=axes) + SNR_EPS) / ((d * d).sum(axis=axes) + SNR_EPS))
        peak = float(np.abs(t).max()) if t.size else 0.0
        return {"mse": mse, "snr_db": float(snr.mean()),
                "psnr_db": float(10 * np.log10((peak * peak + SNR_EPS) / (mse + SNR_EPS)))}

    def metrics_groups(self, pairs):
        if len({p.shape[1:] for p, _ in pairs}) == 1:
            return self.metrics(*self._joined(pairs))
        # per frame, batches of different lengths: MSE weighs elements, SNR examples, PSNR the whole
        ms = [(self.metrics(p, y), p.size, len(p), float(np.abs(y).max()) if y.size else 0.0) for p, y in pairs]
        mse = sum(m["mse"] * n for m, n, _, _ in ms) / max(1, sum(n for _, n, _, _ in ms))
        snr = sum(m["snr_db"] * k for m, _, k, _ in ms) / max(1, sum(k for _, _, k, _ in ms))
        peak = max(pk for _, _, _, pk in ms)
        return {"mse": float(mse), "snr_db": float(snr),
                "psnr_db": float(10 * np.log10((peak * peak + SNR_EPS) / (mse + SNR_EPS)))}

    def check_targets(self, y, where):
        if y.dtype.kind != "f":
            raise ValueError(f"{where}: task regress needs float targets; got {y.dtype} (integer labels: task "
                             f"classify or frames)")

    def check_output(self, out_shape, y_shape, n_classes):
        if tuple(out_shape[1:]) != tuple(y_shape[1:]):
            return (f"the model outputs shape {tuple(out_shape[1:])} per example; task regress needs the targets' "
                    f"shape {tuple(y_shape[1:])}")
        return None


TASKS: Dict[str, Task] = {t.name: t for t in (Classify(), Frames(), Regress())}

MAIN_METRICS = (("accuracy", True), ("frame_accuracy", True), ("snr_db", True), ("loss", False))
"""The metric a result dict is ranked by, first present wins: (name, higher is better)."""
SHORT_NAMES = {"accuracy": "acc", "frame_accuracy": "frame acc", "snr_db": "SNR dB"}
"""How epoch lines and the evaluation table head a metric."""
SHARES = ("accuracy", "frame_accuracy")
"""Metrics that are shares of examples or frames: shown in percent, budgets in percentage points."""


def format_metric(metric: str, value: float) -> str:
    """A metric's value for people: shares in percent, SNRs in dB, anything else to 4 decimals."""
    if metric in SHARES:
        return f"{100 * value:.2f} %"
    return f"{value:.2f} dB" if metric.endswith("_db") else f"{value:.4f}"


def task_of(y: np.ndarray) -> Task:
    """The task labels imply: integer (N,) classify, integer (N, T) frames, float regress."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return TASKS["frames"] if y.ndim == 2 else TASKS["classify"]
    return TASKS["regress"]


def get_task(name: Optional[str], y: Optional[np.ndarray] = None) -> Task:
    """The task named (checked against the labels y when given), or the one the labels imply."""
    if name is None:
        if y is None:
            raise ValueError("get_task: give a task name or the labels")
        return task_of(y)
    if name not in TASKS:
        raise ValueError(f"task {name!r}; expected one of {list(TASKS)}")
    if y is not None:
        TASKS[name].check_targets(np.asarray(y), "the data")
    return TASKS[name]


def main_metric(result: dict) -> Tuple[str, float, bool]:
    """(name, value, higher is better) of the metric that ranks a result dict of `evaluate`."""
    for name, higher in MAIN_METRICS:
        if name in result:
            return name, float(result[name]), higher
    raise ValueError(f"main_metric: no metric among {list(result)}")
