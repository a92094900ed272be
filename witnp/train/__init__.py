"""Training: the fit loop, the float -> QAT -> NAT recipe and its evaluation table, losses, optimizers and
datasets.

    loop.py     fit, evaluate, calibrate, with_config, Stage, run_recipe, the evaluation table
    losses.py   cross-entropy (label smoothing, per example or per frame), MSE, L1, SNR: value and gradient
    tasks.py    what is learned: classify, frames, regress (loss, metrics, the metric that picks the best)
    run_state.py  a run's state between epochs: model state, generator states, the metrics files
    callbacks.py  what happens around fit's epochs: progress, log lines, metrics files, best model, early
                stopping, checkpoints, and a user's own (Keras's and Lightning's shape)
    optim.py    SGD, Adam, AdamW, gradient clipping, learning-rate schedules (torch's update rules)
    data.py     datasets (.npz), seeded batching

`witnp.train.fit`, `witnp.train.run_recipe`, ... are re-exported here; `witnp.optim` and `witnp.losses` are
these modules too.
"""
from . import callbacks, data, losses, optim, tasks  # noqa: F401
from .loop import (NOISE_EVAL_SEED, MetricsLog, Stage, TrainingDiverged, calibrate, eval_table_row, evaluate, fit,
                   format_table, noise_eval_rng, read_metrics, run_recipe, with_config)

__all__ = ["TrainingDiverged", "fit", "evaluate", "calibrate", "with_config", "Stage", "run_recipe", "format_table",
           "eval_table_row", "noise_eval_rng", "NOISE_EVAL_SEED", "MetricsLog", "read_metrics", "data", "losses",
           "optim", "tasks", "callbacks"]
