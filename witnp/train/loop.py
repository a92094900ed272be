"""Training: a fit loop with the vendor's epoch semantics, and the float -> QAT -> NAT recipe with its
evaluation table (float / quantized / quantized+noise).

`fit` calls `begin_epoch()` at the start of every epoch (so the auto-scale schedule runs as on the vendor's
framework), shuffles with a seeded generator, draws noise from its own seeded generator, validates every
epoch, keeps the best model, stops early, and stops with `TrainingDiverged` on a NaN or inf loss. With a
checkpoint path it saves model, optimizer and generator states after every epoch; `resume=True` continues
from there and reproduces the uninterrupted run's curve exactly.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import NonFiniteError, TrainingDiverged
from ..handoff import model_file as hdf5
from ..handoff.atomic import write_text
from . import optim
from .data import Dataset, batches
from ..layers.container import units, walk
from ..layers.registry import build, layer_spec
from .run_state import MetricsLog, _restore, _state, read_metrics

__all__ = ["TrainingDiverged", "fit", "evaluate", "calibrate", "with_config", "Stage", "run_recipe", "format_table",
           "eval_table_row", "MetricsLog", "read_metrics", "noise_eval_rng", "NOISE_EVAL_SEED"]


def _check_int(owner, name, v, lo, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        raise ValueError(f"{owner}: {name}={v!r}; expected an integer " + (f">= {lo}" if hi is None else f"in {lo}..{hi}"))


def with_config(model, changes: Optional[dict] = None, per_layer: Optional[Dict[str, dict]] = None):
    """A copy of `model` whose layers' configs have `changes` applied (and per_layer[name] for the leaf named
    name), with the same parameters and stats (io_max included). The current scales start from the new
    config, as when the vendor's framework loads a state dict into a model built with another config."""
    spec = layer_spec(model)

    def edit(s, prefix):
        if "children" in s:
            for name, child in s["children"]:
                edit(child, f"{prefix}{name}.")
        elif s.get("config") is not None:
            s["config"].update(changes or {})
            s["config"].update((per_layer or {}).get(prefix[:-1], {}))
    edit(spec, "")
    new = build(spec)
    _restore(new, _state(model), observer=False)
    return new


def _forward_eval(model, x, batch_size, rng):
    outs = [model.forward(x[i:i + batch_size], train=False, rng=rng)[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,), np.float32)


def evaluate(model, x, y, loss_fn=None, batch_size: int = 256, rng=None, task=None, extras: bool = False,
             lengths=None, time_axis: int = 1) -> dict:
    """{"loss", and the task's metrics} of inference forwards over (x, y) (`witnp.train.tasks`: accuracy and
    macro_f1 for classification, frame_accuracy and frame_f1 per frame, mse, snr_db and psnr_db for
    regression). task: a Task or its name (default: the one y implies); loss_fn: default the task's first
    loss. extras: also the task's non-scalar results (the confusion matrix) under "extras". lengths (N,):
    variable-length sequences, run in batches of one length each, cropped (`data.batches`): the figures
    count every example and frame once, and nothing past a length."""
    task = _task(task, y)
    loss_fn = loss_fn or task.loss()
    rng = rng if rng is not None else np.random.default_rng(0)
    if lengths is not None:
        return _evaluate_lengths(model, x, y, loss_fn, batch_size, rng, task, extras, lengths, time_axis)
    out = _forward_eval(model, x, batch_size, rng)
    loss, _ = loss_fn(out, y)
    res = {"loss": float(loss)}
    if task.check_output(out.shape, np.shape(y), None) is None:
        res.update(task.metrics(out, y))
        if extras:
            res["extras"] = task.extras(out, y)
    return res


def _evaluate_lengths(model, x, y, loss_fn, batch_size, rng, task, extras, lengths, time_axis):
    from .data import crop, length_groups
    from .losses import loss_weight
    pairs, tot, wsum = [], 0.0, 0
    for idx in length_groups(lengths, batch_size):
        xb, yb = crop(x, y, idx, int(lengths[idx[0]]), time_axis)
        out = model.forward(xb, train=False, rng=rng)[0]
        w = loss_weight(loss_fn, out)
        tot += loss_fn(out, yb)[0] * w
        wsum += w
        pairs.append((out, yb))
    res = {"loss": float(tot / max(wsum, 1))}
    if all(task.check_output(p.shape, np.shape(t), None) is None for p, t in pairs):
        res.update(task.metrics_groups(pairs))
        if extras:
            res["extras"] = task.extras_groups(pairs)
    return res


def _task(task, y):
    from .tasks import get_task, task_of
    if task is None:
        return task_of(y)
    return get_task(task) if isinstance(task, str) else task  # get_task: an unknown name is a one-line error


NOISE_EVAL_SEED = 1000
"""Noisy evaluations draw their noise from np.random.default_rng(NOISE_EVAL_SEED + s) for seeds s = 0..N-1:
`witnp train`'s table and `witnp eval` use the same draws, so one model shows one noisy figure."""


def noise_eval_rng(s: int) -> np.random.Generator:
    """The generator of the s-th noise seed of a noisy evaluation (`NOISE_EVAL_SEED`)."""
    return np.random.default_rng(NOISE_EVAL_SEED + int(s))


def fit(model, data: Dataset, *, optimizer: optim.Optimizer, epochs: int, batch_size: int = 32, seed: int = 0,
        loss_fn=None, patience: Optional[int] = None, keep_best: bool = True, checkpoint: Optional[str] = None,
        resume: bool = False, log_dir: Optional[str] = None, stage: str = "", clip_norm: Optional[float] = None,
        schedule=None, progress: Optional[bool] = None, log: Callable[[str], None] = print,
        stop_after: Optional[int] = None, noise_mode: str = "read", task=None, callbacks=None) -> List[dict]:
    """Train `model` on data.x_train/y_train, validating every epoch on data.x_val/y_val (the test split only
    when the data has no validation split: see `data.with_validation`). Noisy models are validated over 3
    noise draws, averaged.

    fit runs the batches and the validation; everything around them is a callback (`witnp.train.callbacks`):
    the options below build the default ones, and `callbacks` adds a user's own (after the defaults, before
    the checkpoint). task: a `witnp.train.tasks` Task or name (default: the one the labels imply); its first
    loss is the default loss_fn, and its main metric on the validation split picks the best epoch.

    Returns the history: one dict per epoch (epoch, stage, train_loss, train_<main metric> for labels,
    val_loss, val_<metric> for each of the task's metrics, lr, seconds). Options: progress (a bar per epoch;
    default on a terminal), log (a line per epoch), log_dir (metrics.csv / .jsonl, `MetricsLogger`),
    keep_best (restore the best epoch's weights at the end, `BestModel`), patience (`EarlyStopping`),
    checkpoint (a model-file path written after every epoch with optimizer and generator states,
    `Checkpoint`; resume=True continues from it), stop_after (leave after that many epochs of this call, as an
    interruption would, for tests). noise_mode "read" (the vendor's NORMAL: a new draw every forward) or
    "chip": one simulated chip per epoch, its programming error held for every batch of the epoch
    (`witnp.noise.ChipSource`), a new chip the next epoch.
    """
    from . import callbacks as cbs
    if noise_mode not in ("read", "chip"):
        raise ValueError(f"fit: noise_mode={noise_mode!r}; expected 'read' or 'chip'")
    _check_int("fit", "epochs", epochs, 0)
    _check_int("fit", "batch_size", batch_size, 1)
    _check_int("fit", "seed", seed, 0)
    if patience is not None:
        _check_int("fit", "patience", patience, 0)
    if not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"fit: optimizer is {type(optimizer).__name__}; expected a witnp.optim optimizer")
    if len(data.x_train) == 0 or len(data.x_test) == 0:
        raise ValueError(f"fit: the data has {len(data.x_train)} training and {len(data.x_test)} test examples; "
                         f"expected at least one of each")
    user = list(callbacks or [])
    if not all(isinstance(c, cbs.Callback) for c in user):
        raise TypeError(f"fit: callbacks {user!r}; expected witnp.train.callbacks.Callback instances")
    if resume and not checkpoint:
        raise ValueError(f"fit: resume=True but the checkpoint {checkpoint!r} does not exist; expected the "
                         f"checkpoint path of an earlier fit (or resume=False to start afresh)")
    task = _task(task, data.y_train)
    loss_fn = loss_fn or task.loss()
    run = cbs.FitRun(model=model, optimizer=optimizer, data=data, task=task, epochs=epochs, stage=stage, seed=seed,
                     schedule=schedule,
                     shuffle_rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))),
                     noise_rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))
    run.n_batches = (math.ceil(len(data.x_train) / batch_size) if data.lengths_train is None else
                     sum(math.ceil(c / batch_size) for c in np.unique(data.lengths_train, return_counts=True)[1]))
    bar = progress if progress is not None else sys.stdout.isatty()
    run.callbacks = ([cbs.ProgressBar()] if bar else []) + [cbs.MetricsLogger(log_dir), cbs.LogLines(log),
                     cbs.BestModel(restore=keep_best, path=checkpoint + ".best.h5" if checkpoint else None)]
    run.callbacks += [cbs.EarlyStopping(patience, log)] if patience is not None else []
    run.callbacks += user + ([cbs.Checkpoint(checkpoint, resume)] if checkpoint else [])
    run.callbacks += [cbs.StopAfter(stop_after)] if stop_after is not None else []
    # a resumed fit first restores the checkpoint (weights, generators, callbacks' states); then the others
    for cb in sorted(run.callbacks, key=lambda c: not isinstance(c, cbs.Checkpoint)):
        cb.on_fit_start(run)
    for epoch in range(run.start + 1, epochs + 1):
        if run.stop:
            break
        run.epoch = epoch
        for cb in run.callbacks:
            cb.on_epoch_start(run)
        row = _train_epoch(run, batch_size, loss_fn, clip_norm, noise_mode)
        val = _validate(model, data, loss_fn, seed, epoch, task)
        run.main = task.main if task.main in val else "loss"
        row.update({"val_" + k: v for k, v in val.items()})
        row.update(lr=optimizer.lr, seconds=round(time.perf_counter() - row.pop("_t0"), 3))
        run.score = val[run.main] if (run.main != "loss" and task.higher_is_better) else -val[run.main]
        run.history.append(row)
        if schedule is not None:
            schedule.step()
        for cb in run.callbacks:
            cb.on_epoch_end(run, row)
        if run.abort:
            return run.history
    for cb in run.callbacks:
        cb.on_fit_end(run)
    return run.history


def _train_epoch(run, batch_size, loss_fn, clip_norm, noise_mode) -> dict:
    """One epoch of training batches; the row's training figures (and its start time under "_t0")."""
    model, data, stage, epoch = run.model, run.data, run.stage, run.epoch
    t0 = time.perf_counter()
    model.begin_epoch()
    tot, correct, seen = 0.0, 0, 0
    chip = None
    if noise_mode == "chip":  # this epoch's chip, from (seed, epoch): a resumed run meets the same chips
        from ..noise import ChipSource
        chip = ChipSource(int(np.random.SeedSequence([run.seed, epoch, 7]).generate_state(1)[0]))
    it = batches(data.x_train, data.y_train, batch_size, run.shuffle_rng, lengths=data.lengths_train,
                 time_axis=data.time_axis)
    for b, (xb, yb) in enumerate(it, 1):
        where = f"at epoch {epoch}, batch {b} (stage {stage or '-'}); lower the learning rate or check the data"
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                out, ctx = model.forward(xb, train=True, rng=chip.begin_forward() if chip is not None else run.noise_rng)
                loss, g = loss_fn(out, yb)
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"fit: the loss became {loss} {where}")
                model.zero_grad()
                model.backward(g, ctx)
        except NonFiniteError as e:  # a layer refused a non-finite activation or gradient
            raise TrainingDiverged(f"fit: non-finite values {where} ({e})") from None
        if clip_norm:
            optim.clip_grad_norm(model, clip_norm)
        run.optimizer.step()
        tot += loss * len(xb)
        seen += len(xb)
        if yb.dtype.kind in "iu" and out.ndim == yb.ndim + 1:  # labels: the share of right argmaxes
            correct += float((out.argmax(-1) == yb).mean()) * len(xb)
        for cb in run.callbacks:
            cb.on_batch_end(run, b, loss)
    row = {"epoch": epoch, "stage": stage, "train_loss": tot / max(seen, 1), "_t0": t0}
    if data.y_train.dtype.kind in "iu":
        row["train_" + run.task.main] = correct / max(seen, 1)
    return row


def _validate(model, data, loss_fn, seed, epoch, task=None) -> dict:
    """The epoch's validation metrics: on the validation split (else the test split), averaged over 3 noise
    draws when any array of the model is noisy (one draw would pick the best epoch by its luck)."""
    xv, yv, lv = data.split("val") if data.x_val is not None else data.split("test")
    noisy = any(l.config is not None and l.config.use_quantization and l.config.noise_level for _, l in walk(model))
    runs = [evaluate(model, xv, yv, loss_fn, rng=np.random.default_rng([seed, epoch, k]), task=task, lengths=lv,
                     time_axis=data.time_axis) for k in range(3 if noisy else 1)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


@dataclass
class Stage:
    """One stage of the recipe: a name, config changes applied to every layer (and per layer), epochs, lr, and
    training options (each optional; `run_recipe`'s argument when absent): optimizer ("adam", "adamw", "sgd"),
    weight_decay, clip_norm (gradient clipping by global norm), label_smoothing (cross-entropy), batch_size,
    schedule ({"type": "step" | "cosine" | "constant", "step_size", "gamma", "eta_min", "warmup_epochs"})."""
    name: str
    changes: dict
    epochs: int
    lr: float
    per_layer: Dict[str, dict] = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def calibrate(model, x, batch_size: int = 32, steps: Optional[int] = None, seed: int = 0,
              strategy: str = "extrema", param: Optional[float] = None,
              per_layer: Optional[Dict[str, str]] = None, lengths=None, time_axis: int = 1) -> None:
    """Collect io_max on `x` as the first training forwards of an epoch do (begin_epoch, then `steps` training
    forwards, default the largest auto_scale_update_step), without any weight update. Training forwards also
    move BatchNorm running statistics: calibrate a copy (`with_config`) when that matters.

    strategy: "extrema" (the vendor's running maximum: the above alone), or "moving_average", "percentile"
    (param: the percentile), "mse", "kl" for the array layers' io_max_x and io_max_y, from the float model's
    activations on the same frames (`witnp.analysis.calibration`). per_layer: {layer name: "NAME[:P]"} for
    array layers that take another strategy than `strategy` (names as `witnp.walk` gives them). lengths:
    variable-length sequences, calibrated in batches of one length (nothing past a length is seen)."""
    from ..analysis.calibration import STRATEGIES, calibrate_arrays, parse_strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"calibrate: strategy={strategy!r}; expected one of {list(STRATEGIES)}")
    per = {}
    for name, spec in (per_layer or {}).items():
        try:
            per[name] = parse_strategy(spec)
        except ValueError as e:
            raise ValueError(f"calibrate: per_layer[{name!r}]: {e}") from None
    steps = steps or max([l.config.auto_scale_update_step for _, l in walk(model) if l.config is not None] or [1])
    model.begin_epoch()
    rng = np.random.default_rng(seed)
    seen = []
    for i, (xb, _) in enumerate(batches(x, np.zeros(len(x)), batch_size, rng, lengths=lengths, time_axis=time_axis)):
        if i >= steps:
            break
        model.forward(xb, train=True, rng=rng)
        if lengths is not None:  # the cropped batches are what the strategies below must see
            seen.append(xb)
    if strategy != "extrema" or any(s != "extrema" for s, _ in per.values()):
        float_model = with_config(model, {"use_quantization": False, "noise_level": 0})
        # fixed-length data: its first steps·batch_size examples in order; variable-length: the batches above
        chunk = x[:steps * batch_size] if lengths is None else seen
        calibrate_arrays(model, float_model, chunk, strategy, param, batch_size, per_layer=per)


def eval_table_row(model, data, loss_fn, quant_changes: dict, noise_level: int, noise_seeds: int,
                   calibrate_first: bool = False, batch_size: int = 32, calibration: str = "extrema",
                   layer_calibration: Optional[Dict[str, str]] = None, task=None) -> dict:
    """Loss and the task's metrics under float, quantized and quantized+noise (mean and std over noise seeds);
    for classification also the float and quantized confusion matrices under "confusion".

    A model trained in float has no io_max yet: with calibrate_first, the quantized copy collects it on the
    training data first (`calibrate`)."""
    task = _task(task, data.y_test)
    ev = dict(task=task, lengths=data.lengths_test, time_axis=data.time_axis)
    fl = evaluate(with_config(model, {"use_quantization": False, "noise_level": 0}), data.x_test, data.y_test,
                  loss_fn, extras=True, **ev)
    qmodel = with_config(model, dict(quant_changes, use_quantization=True, noise_level=0))
    if calibrate_first:
        from ..analysis.calibration import parse_strategy
        strategy, param = parse_strategy(calibration)
        calibrate(qmodel, data.x_train, batch_size, strategy=strategy, param=param, per_layer=layer_calibration,
                  lengths=data.lengths_train, time_axis=data.time_axis)
    q = evaluate(qmodel, data.x_test, data.y_test, loss_fn, extras=True, **ev)
    nz = None
    if noise_level:
        noisy = with_config(qmodel, {"noise_level": noise_level})
        runs = [evaluate(noisy, data.x_test, data.y_test, loss_fn, rng=noise_eval_rng(s), **ev)
                for s in range(noise_seeds)]
        nz = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))) for k in runs[0]}
    row = {"float": fl, "quantized": q, "noisy": nz}
    cm = {k: c.pop("extras")["confusion"] for k, c in (("float", fl), ("quantized", q))
          if "confusion" in c.get("extras", {})}
    for c in (fl, q):
        c.pop("extras", None)
    if cm:
        row["confusion"] = cm
    return row


def format_table(rows: Dict[str, dict], noise_level: int, noise_seeds: int) -> str:
    """The evaluation table: one row per stage; columns float / quantized / quantized+noise (mean ± std) of the
    loss and the task's main metric (accuracy, frame_accuracy or snr_db)."""
    from .tasks import SHORT_NAMES, main_metric
    first = next(iter(rows.values()), {}).get("float", {}) if rows else {}
    m = main_metric(first)[0] if first else "accuracy"
    m = m if m != "loss" else "accuracy"
    short = SHORT_NAMES.get(m, m)
    w = max(7, len(short))
    head = (f"{'stage':8s} | {'float loss':>10s} {short:>{w}s} | {'quant loss':>10s} {short:>{w}s} | "
            f"{f'noise L{noise_level} ({noise_seeds} seeds) loss':>26s} {short:>{w + 8}s}")
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        f, q, n = r["float"], r["quantized"], r["noisy"]
        val = lambda d: f"{d.get(m, float('nan')):{w}.4f}"  # noqa: E731
        ncol = (f"{n['loss'][0]:>17.4f} ± {n['loss'][1]:6.4f} {n.get(m, (np.nan, 0))[0]:{w}.4f} ± "
                f"{n.get(m, (np.nan, 0))[1]:5.4f}") if n else f"{'-':>26s} {'-':>{w + 8}s}"
        lines.append(f"{name:8s} | {f['loss']:10.4f} {val(f)} | {q['loss']:10.4f} {val(q)} | {ncol}")
    return "\n".join(lines)


def _ckpt(out_dir, stage):
    if not out_dir:
        return None
    os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
    return os.path.join(out_dir, "checkpoints", f"{stage}.h5")


RECIPE_STATE = "recipe.json"
"""The run folder's record of finished stages: {"done": [stage names in order], "rows": {stage: table row}}."""


def run_recipe(model, data: Dataset, stages: List[Stage], *, optimizer: str = "adam", batch_size: int = 32,
               seed: int = 0, loss_fn=None, patience: Optional[int] = None, noise_level: int = 4,
               noise_seeds: int = 5, out_dir: Optional[str] = None, log: Callable[[str], None] = print,
               progress: Optional[bool] = None, resume: bool = False, calibration: str = "extrema",
               layer_calibration: Optional[Dict[str, str]] = None, task=None, loss: Optional[str] = None):
    """The vendor's recipe: each stage starts from the previous stage's best weights and io_max, trains with its
    own config changes, epochs and learning rate, and is evaluated float / quantized / quantized+noise.

    Returns (final model, {stage: table row}, {stage: history}). With out_dir, each stage writes
    <out_dir>/<stage>.h5 (its best model), checkpoints under <out_dir>/checkpoints/ (<stage>.h5 after every
    epoch, <stage>.h5.best.h5), its rows in <out_dir>/metrics.csv and metrics.jsonl, and its table row in
    <out_dir>/recipe.json once the stage is finished. resume=True (with the out_dir of an interrupted run
    of the same stages) skips the finished stages, continues the interrupted one from its last checkpoint and
    ends with the weights, metrics and table of the uninterrupted run. task (a Task or name; default: the
    labels') and loss (one of the task's loss names; default its first) say what is learned; loss_fn, when
    given, replaces them.
    """
    _check_int("run_recipe", "noise_level", noise_level, 0, 9)
    _check_int("run_recipe", "noise_seeds", noise_seeds, 1)
    _check_int("run_recipe", "batch_size", batch_size, 1)
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"run_recipe: optimizer={optimizer!r}; expected 'adam', 'adamw' or 'sgd'")
    names = [st.name for st in stages]
    if not stages or len(set(names)) != len(names):
        raise ValueError(f"run_recipe: stage names {names}; expected at least one stage, each name once")
    for n in names:  # each names <out_dir>/<name>.h5
        if not isinstance(n, str) or not n or n != os.path.basename(n) or n.startswith(".") or "\\" in n:
            raise ValueError(f"run_recipe: stage name {n!r}; expected a plain file-name stem (no path separators)")
    task = _task(task, data.y_train)
    base_loss = loss
    loss_fn = loss_fn or task.loss(loss)
    rows, histories = {}, {}
    if resume and not out_dir:
        raise ValueError("run_recipe: resume=True needs the out_dir of the run to resume")
    state = _read_recipe_state(out_dir) if resume else {"done": [], "rows": {}}
    if state["done"] != names[:len(state["done"])]:
        raise ValueError(f"run_recipe: {out_dir} finished stages {state['done']}, which are not the first stages "
                         f"of {names}; resume the run with the stages it was started with")
    # the quantized columns use the first quantized stage's settings (noise off)
    quant_changes = next(({k: v for k, v in st.changes.items() if k != "noise_level"} for st in stages
                          if st.changes.get("use_quantization")), {})
    for i, st in enumerate(stages):
        if st.name in state["done"]:  # finished before the interruption: its best model and its table row
            model = hdf5.load(os.path.join(out_dir, f"{st.name}.h5"))
            rows[st.name] = state["rows"][st.name]
            histories[st.name] = [r for r in read_metrics(out_dir) if r.get("stage") == st.name]
            log(f"{st.name}: finished before, kept")
            continue
        was_float = not _quantized(model)
        model = with_config(model, st.changes, st.per_layer)
        ckpt = _ckpt(out_dir, st.name)
        resuming = bool(resume and ckpt and os.path.exists(ckpt))
        pinned = _pin_calibrated(model, data, calibrate_now=was_float and not resuming,
                                 calibration=calibration, layer_calibration=layer_calibration, batch_size=batch_size)
        if pinned:
            log(f"{st.name}: io_max of {', '.join(pinned)} kept from calibration ({calibration}"
                f"{' and per layer' if layer_calibration else ''}) while it trains")
        o = st.options
        opt_cls = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD}[o.get("optimizer", optimizer)]
        opt = opt_cls(model, lr=st.lr, **({"weight_decay": o["weight_decay"]} if "weight_decay" in o else {}))
        train_loss = task.loss(base_loss, o["label_smoothing"]) if o.get("label_smoothing") else loss_fn
        histories[st.name] = fit(model, data, optimizer=opt, epochs=st.epochs,
                                 batch_size=o.get("batch_size", batch_size), seed=seed + i, loss_fn=train_loss,
                                 patience=patience, log_dir=out_dir, stage=st.name, log=log, progress=progress,
                                 checkpoint=ckpt, resume=resuming,
                                 clip_norm=o.get("clip_norm"), schedule=make_schedule(opt, o.get("schedule"),
                                                                                      st.epochs),
                                 noise_mode=o.get("noise_mode", "read"), task=task)
        rows[st.name] = eval_table_row(model, data, loss_fn, quant_changes, noise_level, noise_seeds,
                                       calibrate_first=not _quantized(model), batch_size=batch_size,
                                       calibration=calibration, layer_calibration=layer_calibration, task=task)
        log(format_table({st.name: rows[st.name]}, noise_level, noise_seeds))
        if out_dir:
            hdf5.save(model, os.path.join(out_dir, f"{st.name}.h5"), data=getattr(data, "source", None))
            state["done"].append(st.name)
            state["rows"][st.name] = rows[st.name]
            write_text(os.path.join(out_dir, RECIPE_STATE), json.dumps(state, indent=1))
    return model, rows, histories


def _quantized(model) -> bool:
    return any(l.config.use_quantization for _, l in walk(model) if l.config is not None)


def _pin_calibrated(model, data, calibrate_now: bool, calibration: str, layer_calibration, batch_size: int) -> List[str]:
    """A quantized stage under a calibration strategy other than extrema (global or per layer): the array
    layers that strategy covers get their io_max from it and keep it while the stage trains (the vendor's
    observer would replace it by the running maximum within auto_scale_update_step forwards of every epoch).
    calibrate_now: the stage starts from a float model (else the io_max the previous stage left is kept).
    Returns the pinned layers' names; none under extrema, which stays the vendor's schedule bit for bit."""
    from ..analysis.calibration import parse_strategy, strategy_layers
    if not _quantized(model):
        return []
    strategy, param = parse_strategy(calibration)
    per = {name: parse_strategy(spec) for name, spec in (layer_calibration or {}).items()}
    names = strategy_layers(model, strategy, per)
    if not names:
        return []
    if calibrate_now:
        calibrate(model, data.x_train, batch_size, strategy=strategy, param=param, per_layer=layer_calibration,
                  lengths=data.lengths_train, time_axis=data.time_axis)
    layers = dict(units(model))
    for name in names:
        layers[name].pin_io_max(("x", "y"))
    return names


def make_schedule(opt, spec: Optional[dict], epochs: int):
    """A stage's learning-rate schedule from its spec (None: constant): {"type": "step", "step_size",
    "gamma"} / {"type": "cosine", "eta_min"} (over the stage's epochs after the warm-up) / {"type":
    "constant"}, each with an optional "warmup_epochs" (linear from lr/(w + 1))."""
    if not spec:
        return None
    kind, warm = spec.get("type", "constant"), int(spec.get("warmup_epochs", 0))
    if kind == "step":
        after = optim.StepLR(opt, int(spec.get("step_size", 1)), float(spec.get("gamma", 0.1)))
    elif kind == "cosine":
        after = optim.CosineAnnealingLR(opt, max(1, epochs - warm), float(spec.get("eta_min", 0.0)))
    elif kind == "constant":
        after = None
    else:
        raise ValueError(f"schedule type {kind!r}; expected 'step', 'cosine' or 'constant'")
    return optim.LinearWarmup(opt, warm, after) if warm else (after or optim.LinearWarmup(opt, 0))


def _read_recipe_state(out_dir) -> dict:
    path = os.path.join(out_dir, RECIPE_STATE)
    if not os.path.exists(path):
        return {"done": [], "rows": {}}
    with open(path) as f:
        st = json.load(f)
    st["rows"] = {k: _row_from_json(v) for k, v in st["rows"].items()}
    return st


def _row_from_json(row: dict) -> dict:
    """A table row read back from JSON: the noisy column's (mean, std) pairs as tuples again."""
    noisy = row.get("noisy")
    return dict(row, noisy={k: tuple(v) for k, v in noisy.items()} if noisy else noisy)
