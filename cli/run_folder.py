"""witnp train's run folder: what a run leaves there, and the checks that refuse to mix, lose or overwrite a run
(--resume continues one with the same config, --overwrite replaces it)."""
from __future__ import annotations

import json
import os

from . import runconfig
from .common import wn_same


# what a run folder holds (besides <stage>.h5 per stage): a folder with any of these holds a run
RUN_FILES = ("config.json", "recipe.json", "metrics.csv", "metrics.jsonl", "eval.txt", "eval.json", "best.h5",
             "last.h5", "checkpoints")


def _run_files(folder, stage_names):
    names = list(RUN_FILES) + [f"{n}.h5" for n in stage_names]
    return [os.path.join(folder, n) for n in names if os.path.lexists(os.path.join(folder, n))]


def _old_stage_names(folder):
    try:
        with open(os.path.join(folder, "config.json")) as f:
            return [s.get("name") for s in json.load(f).get("stages", []) if isinstance(s, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def _first_difference(a, b, where="config"):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}"
            d = _first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{where}.{i}")
            if d:
                return d
        return None
    return None if a == b else where


def _check_run_folder(folder, cfg, stages, resume, overwrite, inputs):
    """Refuse what would mix, lose or overwrite a run, before anything is created: a file where the folder
    should be, an existing run without --resume/--overwrite, --resume of another config or of no run, and
    --overwrite of a folder one of this run's inputs lives in as a run file."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise runconfig.RunConfigError(f"out = {folder!r}: a file, not a folder; expected a run folder path")
    names = [st.name for st in stages]
    present = _run_files(folder, names + _old_stage_names(folder)) if os.path.isdir(folder) else []
    if resume:
        if not os.path.exists(os.path.join(folder, "config.json")):
            raise runconfig.RunConfigError(f"--resume: {folder} holds no run to resume (no config.json); run "
                                           f"without --resume to start it")
        with open(os.path.join(folder, "config.json")) as f:
            old = json.load(f)
        diff = _first_difference(old, json.loads(json.dumps(cfg)))
        if diff:
            raise runconfig.RunConfigError(f"--resume: {diff} differs from the interrupted run's "
                                           f"{os.path.join(folder, 'config.json')}; resume with the same --config "
                                           f"and --set options, or start afresh with --overwrite")
        return []
    if present and not overwrite:
        raise runconfig.RunConfigError(f"{folder} already holds a run ({', '.join(os.path.basename(p) for p in present[:3])}"
                                       f"{', ...' if len(present) > 3 else ''}); pass --resume to continue it, "
                                       f"--overwrite to replace it, or --out for another folder")
    for p in inputs:
        if p and any(wn_same(p, q) or os.path.realpath(p).startswith(os.path.realpath(q) + os.sep) for q in present):
            raise runconfig.RunConfigError(f"--overwrite would delete {p}, an input of this run; copy it out of "
                                           f"{folder} first")
    return present


def _clear_run(paths):
    import shutil
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
