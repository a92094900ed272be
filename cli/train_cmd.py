"""witnp train: a run configuration through the float -> QAT -> NAT recipe into a run folder."""
from __future__ import annotations

import json
import os
import time

import click

import witnp as wn

from . import runconfig
from .common import exit_on_interrupt, friendly
from .run_folder import _check_run_folder, _clear_run


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Run configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (dotted; TOML value), e.g. --set stages.0.epochs=2. Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (overrides the config's `out`).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in the run folder (same config and "
              "options) from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in the run folder.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@friendly
def train(config_path, sets, out, resume, overwrite, progress):
    """Train a model through the float -> QAT -> NAT recipe; with no arguments, the default CNN on the shipped
    digits. Writes the resolved config, per-stage and best/last models, metrics and the evaluation table.

    Everything is checked before the run folder is touched (config, data, the model on one batch, the folder);
    an interrupted run continues with the same command and --resume."""
    if resume and overwrite:
        raise click.UsageError("--resume continues the run in the folder and --overwrite replaces it: pass one")
    cfg = runconfig.resolve(config_path, sets)
    if out:
        cfg["out"] = out
    with exit_on_interrupt(lambda: f"the run so far is kept in {cfg['out']}; continue it with the same command "
                                   f"and --resume:\n  {_command_line(resume=True)}"):
        train_run(cfg, None, config_path, resume, overwrite, progress, click.echo)


def train_run(cfg: dict, raw, config_path, resume: bool, overwrite: bool, progress, log) -> dict:
    """One run of a resolved run config into the run folder cfg["out"]: `witnp train`'s work, also each point
    of `witnp sweep` (which loads the data once per worker: raw is the dataset as loaded, before the
    validation split, or None to load cfg["data"]). Everything is checked before the folder is touched.
    Returns the evaluation table's rows {stage: row} (eval.json)."""
    from witnp.handoff.atomic import copy_file, remove_stale_temporaries, write_text
    data = runconfig.with_validation_split(cfg, raw) if raw is not None else runconfig.load_data(cfg)
    task = runconfig.task_of(cfg, data)
    wn.manual_seed(cfg.get("seed", 0))
    model = runconfig.build_model(cfg)
    stages = runconfig.stages_of(cfg)
    _check_fits(model, data, stages, task)
    folder = cfg["out"]
    inputs = [config_path] + ([data.source] if os.path.exists(data.source) else [])
    old_run = _check_run_folder(folder, cfg, stages, resume, overwrite, inputs)
    # checks done: from here on the run folder is written
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder)
    if old_run:
        _clear_run(old_run)
    if not resume:
        write_text(os.path.join(folder, "config.json"), json.dumps(cfg, indent=2))
    nval = (f"{len(data.x_val)} validation / " if data.x_val is not None
            else "no validation split (val_fraction = 0: the test split picks the best epoch) / ")
    log(f"witnp train: {len(data.x_train)} training / {nval}{len(data.x_test)} test samples from {data.name}; "
        f"stages {', '.join(s.name for s in stages)}; run folder {folder}" + (" (resumed)" if resume else ""))
    t0 = time.perf_counter()
    model, rows, _ = wn.train.run_recipe(
        model, data, stages, optimizer=cfg.get("optimizer", "adam"), batch_size=cfg.get("batch_size", 32),
        seed=cfg.get("seed", 0), patience=cfg.get("patience", 0) or None, noise_level=cfg.get("noise_level", 4),
        noise_seeds=cfg.get("noise_seeds", 5), out_dir=folder, log=log, progress=progress, resume=resume,
        calibration=cfg.get("calibration", "extrema"), layer_calibration=runconfig.layer_calibration(cfg),
        task=task, loss=cfg.get("loss"))
    table = wn.train.format_table(rows, cfg.get("noise_level", 4), cfg.get("noise_seeds", 5))
    wn.save(model, os.path.join(folder, "best.h5"), data=data.source)
    last = os.path.join(folder, "checkpoints", f"{stages[-1].name}.h5")
    if os.path.exists(last):  # the final stage's last epoch (a checkpoint: optimizer and generator states too)
        copy_file(last, os.path.join(folder, "last.h5"))
    write_text(os.path.join(folder, "eval.txt"), table + "\n")
    write_text(os.path.join(folder, "eval.json"), json.dumps(rows, indent=2))
    log("\n" + table)
    log(f"\ndone in {time.perf_counter() - t0:.1f} s; best model: {os.path.join(folder, 'best.h5')}")
    return rows


def _command_line(resume=False):
    import shlex
    import sys
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")]
    return " ".join(["witnp"] + [shlex.quote(a) for a in args] + (["--resume"] if resume else []))


def _check_fits(model, data, stages, task=None):
    """The model on one batch of the data, float and in each stage's config, before any training: its output
    must fit the task's targets."""
    from witnp.train.tasks import task_of
    task = task or task_of(data.y_train)
    try:
        y = model(data.x_train[:2])
        for st in stages:
            wn.train.with_config(model, st.changes, st.per_layer)(data.x_train[:2])
    except (ValueError, TypeError) as e:
        raise runconfig.RunConfigError(f"the model does not fit the data {data.name} (x {data.x_train.shape[1:]}):"
                                       f" {e}") from None
    bad = task.check_output(y.shape, data.y_train[:2].shape, data.n_classes)
    if bad:
        raise runconfig.RunConfigError(f"{bad} (the data {data.name})")
