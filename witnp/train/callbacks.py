"""What happens around `fit`'s epochs, as callbacks (Keras's and Lightning's shape): fit itself only runs
batches and validation; progress bars, log lines, metrics files, best-model keeping, early stopping and
checkpoints are callbacks, and a user adds their own the same way (``fit(..., callbacks=[MyCallback()])``).

A callback subclasses `Callback` and overrides any of the hooks. They get the `FitRun` (model, optimizer,
data, task, the epoch, the history, ...); `on_epoch_end` also gets the epoch's row (train and validation
metrics) and may set ``run.stop = True`` (stop after this epoch; the later callbacks still see it) or
``run.abort = True`` (leave at once, as an interruption would: no best-model restore). A callback with
resumable state gives `state()` / `load_state()`: `Checkpoint` saves it with the model and restores it on
resume, so a resumed fit continues exactly.

fit's default list, in order: ProgressBar (when progress is on), MetricsLogger (log_dir), LogLines,
BestModel (keep_best), EarlyStopping (patience), the user's callbacks, Checkpoint (checkpoint path),
StopAfter (stop_after).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

__all__ = ["Callback", "FitRun", "ProgressBar", "MetricsLogger", "LogLines", "BestModel", "EarlyStopping",
           "Checkpoint", "StopAfter"]


@dataclass
class FitRun:
    """The state of one `fit` call that callbacks read (and a few write: stop, abort)."""
    model: Any
    optimizer: Any
    data: Any
    task: Any
    epochs: int
    stage: str = ""
    seed: int = 0
    schedule: Any = None
    shuffle_rng: Any = None
    noise_rng: Any = None
    start: int = 0  # epochs done before this call (a resumed fit)
    epoch: int = 0
    n_batches: int = 0
    history: List[dict] = field(default_factory=list)
    score: Optional[float] = None  # this epoch's main validation metric, signed so that higher is better
    main: str = "loss"  # its name
    stop: bool = False
    abort: bool = False
    callbacks: List["Callback"] = field(default_factory=list)


class Callback:
    """Hooks around fit's epochs; each does nothing unless overridden."""

    def on_fit_start(self, run: FitRun) -> None:
        pass

    def on_epoch_start(self, run: FitRun) -> None:
        pass

    def on_batch_end(self, run: FitRun, batch: int, loss: float) -> None:
        pass

    def on_epoch_end(self, run: FitRun, row: dict) -> None:
        pass

    def on_fit_end(self, run: FitRun) -> None:
        pass

    def state(self) -> Optional[dict]:
        """What a checkpoint must keep for a resume (None: nothing)."""
        return None

    def load_state(self, state: dict) -> None:
        pass


class ProgressBar(Callback):
    """A click progress bar per epoch on stderr."""

    def on_epoch_start(self, run):
        import click
        label = f"{run.stage + ' ' if run.stage else ''}epoch {run.epoch}/{run.epochs}"
        self.bar = click.progressbar(length=run.n_batches, label=label, file=sys.stderr)
        self.bar.__enter__()

    def on_batch_end(self, run, batch, loss):
        self.bar.update(1)

    def on_epoch_end(self, run, row):
        self.bar.__exit__(None, None, None)


class MetricsLogger(Callback):
    """Every epoch's row in <folder>/metrics.csv and metrics.jsonl (`loop.MetricsLog`), beside the other
    stages' rows; a resumed stage keeps its rows up to the checkpoint."""

    def __init__(self, folder: Optional[str]):
        self.folder = folder

    def on_fit_start(self, run):
        from .run_state import MetricsLog
        kept = len(run.history)
        self.log = MetricsLog(self.folder, keep=lambda r: r.get("stage") != run.stage or r.get("epoch", 0) <= kept)

    def on_epoch_end(self, run, row):
        self.log.write(row)


class LogLines(Callback):
    """One line per epoch: training loss and metric, validation loss and main metric, seconds."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log

    def on_epoch_end(self, run, row):
        from .tasks import SHORT_NAMES
        short = SHORT_NAMES.get(run.main, run.main)
        train_m = f" {short} {row['train_' + run.main]:.4f}" if "train_" + run.main in row else ""
        self.log(f"{run.stage + ' ' if run.stage else ''}epoch {run.epoch}/{run.epochs}: loss {row['train_loss']:.4f}"
                 f"{train_m} | val loss {row['val_loss']:.4f} {short} {row['val_' + run.main]:.4f} "
                 f"({row['seconds']:.1f} s)")


class BestModel(Callback):
    """Keeps the weights of the epoch with the best main validation metric (saved to `path` too, when given)
    and, with restore, puts them back at the end of fit."""

    def __init__(self, restore: bool = True, path: Optional[str] = None):
        self.restore, self.path = restore, path
        self.best, self.since_best, self.best_state = None, 0, None

    def on_fit_start(self, run):
        if self.best is not None and self.path and os.path.exists(self.path):  # resumed: the best so far
            from ..handoff import model_file as hdf5
            from .run_state import _state
            self.best_state = _state(hdf5.load(self.path))

    def on_epoch_end(self, run, row):
        from .run_state import _state
        if self.best is None or run.score > self.best:
            self.best, self.best_state, self.since_best = run.score, _state(run.model), 0
            if self.path:
                from ..handoff import model_file as hdf5
                hdf5.save(run.model, self.path)
        else:
            self.since_best += 1

    def on_fit_end(self, run):
        if self.restore and self.best_state is not None:
            from .run_state import _restore
            _restore(run.model, self.best_state)

    def state(self):
        return {"best": self.best, "since_best": self.since_best}

    def load_state(self, state):
        self.best, self.since_best = state["best"], state["since_best"]


class EarlyStopping(Callback):
    """Stops after `patience` epochs without a better main validation metric."""

    def __init__(self, patience: int, log: Callable[[str], None] = print):
        self.patience, self.log = int(patience), log
        self.best, self.wait = None, 0

    def on_fit_start(self, run):
        if self.wait >= self.patience and run.start:  # it had stopped early before the interruption
            run.stop = True

    def on_epoch_end(self, run, row):
        if self.best is None or run.score > self.best:
            self.best, self.wait = run.score, 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            run.stop = True
            self.log(f"early stop: no improvement for {self.patience} epochs")

    def state(self):
        return {"best": self.best, "wait": self.wait}

    def load_state(self, state):
        self.best, self.wait = state["best"], state["wait"]


class Checkpoint(Callback):
    """After every epoch, the model, optimizer and training state (generators, history, schedule and every
    callback's `state()`) in one model file (`handoff.model_file.save`, atomic); with resume, fit starts
    from it: the same epochs, batches and noise draws as an uninterrupted run."""

    def __init__(self, path: str, resume: bool = False):
        self.path, self.resume = path, resume

    def on_fit_start(self, run):
        if not self.resume:
            return
        from ..handoff import model_file as hdf5
        from .run_state import _gen_from, _restore, _state
        if not os.path.exists(self.path):
            raise ValueError(f"fit: resume=True but the checkpoint {self.path!r} does not exist; expected the "
                             f"checkpoint path of an earlier fit (or resume=False to start afresh)")
        ck = hdf5.load_checkpoint(self.path)
        tr = ck["training"] or {}
        if tr.get("stage", "") != run.stage:
            raise ValueError(f"fit: checkpoint {self.path} is for stage {tr.get('stage')!r}, not {run.stage!r}")
        _restore(run.model, _state(ck["model"]))
        if ck["optimizer_state"] is not None:
            run.optimizer.load_state_dict(ck["optimizer_state"])
        run.start, run.history = tr["epoch"], tr["history"]
        run.shuffle_rng, run.noise_rng = _gen_from(tr["shuffle_rng"]), _gen_from(tr["noise_rng"])
        if run.schedule is not None and tr.get("schedule"):
            run.schedule.load_state_dict(tr["schedule"])
        saved = tr.get("callbacks") or {}
        for cb in run.callbacks:
            name = type(cb).__name__
            if name in saved:
                cb.load_state(saved[name])
            elif isinstance(cb, BestModel) and "best" in tr:  # a checkpoint from before callbacks
                cb.load_state({"best": tr["best"], "since_best": tr["since_best"]})
            elif isinstance(cb, EarlyStopping) and "best" in tr:
                cb.load_state({"best": tr["best"], "wait": tr["since_best"]})

    def on_epoch_end(self, run, row):
        from ..handoff import model_file as hdf5
        from .run_state import _gen_state
        states = {type(cb).__name__: st for cb in run.callbacks if (st := cb.state()) is not None}
        best = states.get("BestModel", {})
        hdf5.save(run.model, self.path, run.optimizer, training={
            "stage": run.stage, "epoch": run.epoch, "history": run.history,
            "shuffle_rng": _gen_state(run.shuffle_rng), "noise_rng": _gen_state(run.noise_rng),
            "best": best.get("best"), "since_best": best.get("since_best", 0), "callbacks": states,
            "schedule": run.schedule.state_dict() if run.schedule is not None else None})


class StopAfter(Callback):
    """Leave after `n` epochs of this call, as an interruption would (tests of resume)."""

    def __init__(self, n: int):
        self.n = int(n)

    def on_epoch_end(self, run, row):
        if run.epoch - run.start >= self.n:
            run.abort = True
