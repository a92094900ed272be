"""``witnp``: the click group. Parses and validates, then calls the library; errors the user can cause print
one clear line and exit 1 (``witnp --debug ...`` shows the traceback instead)."""
from __future__ import annotations

import functools
import json
import os
import time

import click
import numpy as np

import witnp as wn
from witnp.errors import TrainingDiverged

from . import runconfig

EXIT_ERRORS = (ValueError, TypeError, OSError, KeyError, TrainingDiverged)  # ModelFileError is a ValueError


def friendly(fn):
    """Turn library errors into one-line click errors unless --debug was given."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except BrokenPipeError:  # `witnp inspect ... | head`: the reader left; end quietly (Python's own advice)
            import sys
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1)
        except EXIT_ERRORS as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(wn.__version__, prog_name="witnp")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--threads", type=click.IntRange(1), default=None, envvar="WITNP_THREADS", show_envvar=True,
              help="Threads for BLAS and Numba [default: 1, never slower than more on a shared or busy machine; "
                   "see witnp/threads.py].")
@click.pass_context
def main(ctx, debug, threads):
    """Train and deploy neural networks for analog compute-in-memory chips (WTM2101 class)."""
    ctx.ensure_object(dict)["debug"] = debug
    from witnp.threads import set_threads
    set_threads(threads or 1)
    if os.environ.get("WITNP_KEEP_FREED_MEMORY", "1") != "0":
        wn.keep_freed_memory()  # steps reuse freed pages instead of faulting in new ones (witnp/memory.py)


def _load_dataset(data):
    return runconfig.load_dataset(data)


def _model_takes(model, d, model_path):
    """MODEL run on one test frame of the data, before any work: a clear error when they do not fit."""
    try:
        y = model(d.x_test[:1])
    except (ValueError, TypeError) as e:
        raise runconfig.RunConfigError(f"{model_path} does not take the frames of {d.name} (x {d.x_test.shape[1:]}): "
                                       f"{e}") from None
    if d.n_classes is not None and (y.ndim != 2 or y.shape[1] < d.n_classes):
        raise runconfig.RunConfigError(f"{model_path} outputs shape {y.shape[1:]} per frame; {d.name} has "
                                       f"{d.n_classes} classes")


def _data_of(model_path, data):
    """--data, or the dataset the model file records it was trained on."""
    if data:
        return data
    from witnp.handoff.model_file import recorded_data
    rec = recorded_data(model_path)
    if rec is None:
        raise runconfig.RunConfigError(f"{model_path} records no training data (saved without it); pass --data "
                                       f"NAME_OR_NPZ")
    return rec


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


def wn_same(a, b):
    from witnp.handoff.atomic import same_file
    return same_file(a, b)


def _clear_run(paths):
    import shutil
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


@main.command()
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
    from witnp.handoff.atomic import copy_file, remove_stale_temporaries, write_text
    if resume and overwrite:
        raise click.UsageError("--resume continues the run in the folder and --overwrite replaces it: pass one")
    cfg = runconfig.resolve(config_path, sets)
    if out:
        cfg["out"] = out
    data = runconfig.load_data(cfg)
    wn.manual_seed(cfg.get("seed", 0))
    model = runconfig.build_model(cfg)
    stages = runconfig.stages_of(cfg)
    _check_fits(model, data, stages)
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
    click.echo(f"witnp train: {len(data.x_train)} training / {len(data.x_test)} test samples from {data.name}; "
               f"stages {', '.join(s.name for s in stages)}; run folder {folder}" + (" (resumed)" if resume else ""))
    t0 = time.perf_counter()
    try:
        model, rows, _ = wn.train.run_recipe(
            model, data, stages, optimizer=cfg.get("optimizer", "adam"), batch_size=cfg.get("batch_size", 32),
            seed=cfg.get("seed", 0), patience=cfg.get("patience", 0) or None, noise_level=cfg.get("noise_level", 4),
            noise_seeds=cfg.get("noise_seeds", 5), out_dir=folder, log=click.echo, progress=progress, resume=resume)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: the run so far is kept in {folder}; continue it with the same command and "
                   f"--resume:\n  {_command_line(resume=True)}", err=True)
        raise SystemExit(130)
    table = wn.train.format_table(rows, cfg.get("noise_level", 4), cfg.get("noise_seeds", 5))
    wn.save(model, os.path.join(folder, "best.h5"), data=data.source)
    last = os.path.join(folder, "checkpoints", f"{stages[-1].name}.h5")
    if os.path.exists(last):  # the final stage's last epoch (a checkpoint: optimizer and generator states too)
        copy_file(last, os.path.join(folder, "last.h5"))
    write_text(os.path.join(folder, "eval.txt"), table + "\n")
    write_text(os.path.join(folder, "eval.json"), json.dumps(rows, indent=2))
    click.echo("\n" + table)
    click.echo(f"\ndone in {time.perf_counter() - t0:.1f} s; best model: {os.path.join(folder, 'best.h5')}")


def _command_line(resume=False):
    import shlex
    import sys
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")]
    return " ".join(["witnp"] + [shlex.quote(a) for a in args] + (["--resume"] if resume else []))


def _check_fits(model, data, stages):
    """The model on one batch of the data, float and in each stage's config, before any training."""
    try:
        y = model(data.x_train[:2])
        for st in stages:
            wn.train.with_config(model, st.changes, st.per_layer)(data.x_train[:2])
    except (ValueError, TypeError) as e:
        raise runconfig.RunConfigError(f"the model does not fit the data {data.name} (x {data.x_train.shape[1:]}):"
                                       f" {e}") from None
    if data.n_classes is not None and (y.ndim != 2 or y.shape[1] != data.n_classes):
        raise runconfig.RunConfigError(f"the model outputs shape {y.shape[1:]} per sample; the data "
                                       f"{data.name} has class labels 0..{data.n_classes - 1} ({data.n_classes} "
                                       f"classes)")


@main.command("eval")
@click.argument("model_paths", metavar="MODEL...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--data", default=None, help="Dataset name or .npz path (test split) [default: the data the model "
              "file records it was trained on].")
@click.option("--quantize", is_flag=True, help="Evaluate a float model quantized as the recipe quantizes ([quant] "
              "of cli/default.toml), io_max calibrated on the training split (post-training quantization); in a "
              "sweep, the float MODELs among several.")
@click.option("--noise-level", type=click.IntRange(0, 9), default=None,
              help="Evaluate with this NORMAL noise level (default: the model's own).")
@click.option("--noise-levels", default=None, metavar="A-B|A,B,...",
              help="Sweep these noise levels (0..9): mean ± std per level; several MODELs compare on one table.")
@click.option("--noise-seeds", type=click.IntRange(1), default=5, show_default=True,
              help="Noise seeds averaged when noise is on (seeds 0..N-1 of witnp.train.noise_eval_rng, the draws "
                   "of witnp train's table).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="With --noise-levels: write the table.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="With --noise-levels: write the rows.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help='With --noise-levels: a PNG of the metric against noise level (needs "witnp[plot]").')
@click.option("--integer", is_flag=True, help="Also run the integer engine on an in-memory export.")
@friendly
def eval_(model_paths, data, quantize, noise_level, noise_levels, noise_seeds, csv_path, json_path, plot_path,
          integer):
    """Loss and accuracy of MODEL on the test split; with --noise-levels, against noise level, for one or
    several models."""
    if noise_levels is not None:
        return _noise_sweep(model_paths, data, quantize, noise_levels, noise_seeds, csv_path, json_path, plot_path,
                            noise_level, integer)
    if len(model_paths) > 1:
        raise click.UsageError("several MODELs go with --noise-levels (one table); evaluate one MODEL otherwise")
    if csv_path or json_path or plot_path:
        raise click.UsageError("--csv, --json and --plot go with --noise-levels")
    model_path = model_paths[0]
    model = wn.load(model_path)
    d = _load_dataset(_data_of(model_path, data))
    _model_takes(model, d, model_path)
    model = _quantized(model, model_path, d) if quantize else model
    quantized = any(l.config is not None and l.config.use_quantization for _, l in wn.walk(model))
    if noise_level and not quantized:
        raise runconfig.RunConfigError(f"--noise-level {noise_level}: {model_path} is a float model and noise acts "
                                       f"on quantized arrays; evaluate a QAT or NAT model, or add --quantize")
    if integer and not quantized:
        raise runconfig.RunConfigError(f"--integer: {model_path} is a float model; the integer engine runs "
                                       f"quantized models (add --quantize)")
    if noise_level is not None:
        model = wn.train.with_config(model, {"noise_level": noise_level})
    noisy = any(l.config is not None and l.config.use_quantization and l.config.noise_level
                for _, l in wn.walk(model))
    runs = [wn.train.evaluate(model, d.x_test, d.y_test, rng=wn.train.noise_eval_rng(s))
            for s in range(noise_seeds if noisy else 1)]
    for k in runs[0]:
        vals = [r[k] for r in runs]
        extra = f" ± {np.std(vals):.4f} over {len(vals)} noise seeds" if noisy else ""
        click.echo(f"{k}: {np.mean(vals):.4f}{extra}")
    if integer:
        from witnp.handoff.engine import IntegerEngine
        from witnp.handoff.export import export_model
        quiet = wn.train.with_config(model, {"noise_level": 0})
        y_int = IntegerEngine(export_model(quiet)).run(d.x_test)[0]
        y_q = quiet(d.x_test)
        click.echo(f"integer engine: accuracy {(y_int.argmax(1) == d.y_test).mean():.4f}; "
                   f"bit-identical to the quantized model: {np.array_equal(y_int, y_q)}")


def _quantized(model, model_path, d):
    """--quantize: a float model with quantization on, io_max calibrated on the training split (as a quantized
    stage that starts from a float model does)."""
    if any(l.config is not None and l.config.use_quantization for _, l in wn.walk(model)):
        raise runconfig.RunConfigError(f"--quantize: {model_path} is already quantized; evaluate it without "
                                       f"--quantize")
    changes = dict(runconfig.read_toml(runconfig.DEFAULT_TOML)["quant"], use_quantization=True, noise_level=0)
    q = wn.train.with_config(model, changes)  # the recipe's quantization ([quant] of cli/default.toml)
    wn.train.calibrate(q, d.x_train)
    return q


def _noise_sweep(model_paths, data, quantize, levels_text, seeds, csv_path, json_path, plot_path, noise_level,
                 integer):
    from witnp.analysis.noise_sweep import format_sweep, noise_sweep, parse_levels, write_csv, write_json, write_plot
    if noise_level is not None or integer:
        raise click.UsageError("--noise-levels sweeps the levels: --noise-level and --integer go without it")
    levels = parse_levels(levels_text)
    outs = [(o, p) for o, p in (("--csv", csv_path), ("--json", json_path), ("--plot", plot_path)) if p]
    for mp in model_paths:
        _check_outputs(mp, outs)
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise runconfig.RunConfigError('--plot needs matplotlib, which is not installed: pip install '
                                           '"witnp[plot]"') from None
    models, d = {}, None
    for mp in model_paths:
        name = os.path.splitext(os.path.basename(mp))[0]
        if name in models:
            name = mp
        model = wn.load(mp)
        dm = _load_dataset(_data_of(mp, data))
        if d is not None and dm.source != d.source:
            raise runconfig.RunConfigError(f"{mp} records data {dm.source}, {model_paths[0]} {d.source}: pass --data "
                                           f"to evaluate them on one test split")
        d = dm
        _model_takes(model, d, mp)
        is_float = not any(l.config is not None and l.config.use_quantization for _, l in wn.walk(model))
        if quantize and is_float:  # QAT / NAT models as they are
            model, name = _quantized(model, mp, d), f"{name} (PTQ)"
        models[name] = model
    rows = noise_sweep(models, d.x_test, d.y_test, levels, seeds)
    click.echo(f"{d.name} test split, {len(d.x_test)} frames; noisy levels over {seeds} seeds")
    click.echo(format_sweep(rows))
    for path, write in ((csv_path, write_csv), (json_path, write_json), (plot_path, write_plot)):
        if path:
            write(path, rows)
            click.echo(f"wrote {path}")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Handoff HDF5 file.")
@click.option("--golden", type=click.IntRange(0), default=8, show_default=True,
              help="Golden input frames (from the test split of --data) with every layer's expected outputs.")
@click.option("--data", default=None, help="Dataset for the golden frames [default: the data the model file "
              "records it was trained on].")
@click.option("--c-header", type=click.Path(dir_okay=False), help="Also write a C header with the weights.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the gains and shifts as JSON.")
@click.option("--strict", is_flag=True, help="Refuse the export (write nothing) when the pre-flight check finds "
              "anything the chip's mapper would refuse or change.")
@friendly
def export(model_path, output, golden, data, c_header, json_path, strict):
    """Export MODEL (quantized) for the firmware: int8 weights, NPU bias, shifts, G, LUTs and golden vectors.
    The pre-flight check of what the chip's mapper enforces runs first; its findings are printed (or, with
    --strict, refuse the export)."""
    from witnp.handoff.export import export_model, golden_vectors, unsigned_input_findings, write_c_header, \
        write_gains_json, write_handoff
    outs = [("-o", output), ("--c-header", c_header), ("--json", json_path)]
    _check_outputs(model_path, [(o, p) for o, p in outs if p])
    model = wn.train.with_config(wn.load(model_path), {"noise_level": 0})
    findings = []  # the pre-flight check (`export.preflight`): the export's own findings, then the data's
    records = export_model(model, warn=findings.append)
    d = None
    if golden:
        d = _load_dataset(_data_of(model_path, data))
        _model_takes(model, d, model_path)
        findings += unsigned_input_findings(model, d.x_test[:256])
    if strict and findings:
        raise runconfig.RunConfigError(f"--strict: the pre-flight check found {len(findings)} problem(s), nothing "
                                       f"written; the first: {findings[0]}")
    if records:
        records[0][1]["warnings"] = list(findings)  # kept in the handoff file's attributes, as before
    gold = None
    if golden:
        if golden > len(d.x_test):
            raise runconfig.RunConfigError(f"--golden {golden}: the test split of {d.name} has {len(d.x_test)} "
                                           f"frames; expected at most {len(d.x_test)}")
        gold = golden_vectors(model, records, d.x_test[:golden])
        if not np.array_equal(gold["engine_output"], gold["output"]):  # pragma: no cover - a bug if reached
            raise ValueError("the integer engine does not reproduce the model on the golden frames")
    write_handoff(output, records, gold)
    if c_header:
        write_c_header(c_header, records)
    if json_path:
        write_gains_json(json_path, records)
    for w in findings:
        click.echo(f"pre-flight: {w}", err=True)
    click.echo(f"wrote {output}: {len(records)} layers" + (f", {golden} golden frames" if gold else ""))


def _check_outputs(model_path, outs):
    """Each output a new or replaceable file in an existing folder, none of them the input model or another
    output: refused before any work, so no command writes over its own input."""
    for i, (opt, p) in enumerate(outs):
        if wn_same(p, model_path):
            raise runconfig.RunConfigError(f"{opt} {p}: that is MODEL itself; expected a new file (the export "
                                           f"would replace the model)")
        for opt2, p2 in outs[:i]:
            if wn_same(p, p2):
                raise runconfig.RunConfigError(f"{opt} {p}: the same file as {opt2}; expected separate files")
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            raise runconfig.RunConfigError(f"{opt} {p}: the folder {folder} does not exist")
        if os.path.isdir(p):
            raise runconfig.RunConfigError(f"{opt} {p}: a folder; expected a file path")


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", default=None, help="Dataset whose test split measures activation saturation [with "
              "--compare, default: the data the model file records].")
@click.option("--compare", is_flag=True, help="Run the test frames through the float, quantized and noisy model "
              "and report every layer's cosine, SNR, error and saturation, the worst layers and what may help.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="With --compare: also write the "
              "report as JSON (one record per layer).")
@click.option("--frames", type=click.IntRange(1), default=256, show_default=True,
              help="With --compare: test frames used.")
@click.option("--noise-level", type=click.IntRange(0, 9), default=None,
              help="With --compare: the noisy column's level [default: the model's, else 4; 0: none].")
@click.option("--noise-seeds", type=click.IntRange(1), default=3, show_default=True,
              help="With --compare: noise seeds averaged in the noisy column.")
@friendly
def inspect(path, data, compare, json_path, frames, noise_level, noise_seeds):
    """Layers, shapes, scales, G and shifts, io_max and saturation of a model or handoff file; with --compare,
    where the quantized and noisy model lose accuracy, layer by layer."""
    if not compare and (json_path or noise_level is not None):
        raise click.UsageError("--json and --noise-level go with --compare")
    if compare:
        return _compare(path, data, json_path, frames, noise_level, noise_seeds)
    import h5py
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError:
        raise wn.ModelFileError(f"{path}: not a readable HDF5 file") from None
    if fmt == "witnp-firmware":
        from witnp.handoff.export import leaf_records, read_handoff
        for name, rec in leaf_records(read_handoff(path)):
            line = f"{name:>8s} {rec.get('op', rec['type']):16s}"
            if "array_weight" in rec:
                w = rec["array_weight"]
                line += (f" array {w.shape[0]}x{w.shape[1]} {rec['handle_neg_in']:5s} x{rec['x_quant_bits']}/"
                         f"y{rec['y_quant_bits']} sx {rec['scale_x']:g} sw {rec['scale_weight']:g} "
                         f"sy {rec['scale_y']:g} G {rec['G']}")
            click.echo(line)
        return
    model = wn.load(path)
    if data:
        d = _load_dataset(data)
        _model_takes(model, d, path)
    sat = _saturation(model, d) if data else {}
    findings = None
    if any(l.config is not None and l.config.use_quantization for _, l in wn.walk(model)):
        from witnp.handoff.export import preflight
        try:
            findings = preflight(wn.train.with_config(model, {"noise_level": 0}), d.x_test[:256] if data else None)
        except ValueError as e:  # a layer the integer engine cannot run: say so, inspect the rest
            findings = [f"not exportable: {e}"]
    click.echo(f"{path}: {type(model).__name__}, {sum(p.size for _, p in model.named_params())} parameters")
    for name, layer in wn.walk(model):
        cfg = layer.config
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in layer.params.items())
        line = f"{name or '-':>6s} {type(layer).__name__:16s} {shapes}"
        obs = getattr(layer, "observer", None)
        if cfg is not None and cfg.use_quantization and obs is not None and hasattr(layer, "_qs"):
            sc = obs.scales_for_forward(False, layer._qs())
            io = {k[7:]: float(v) for k, v in layer.stats.items() if k.startswith("io_max_")}
            line += f" | {cfg.handle_neg_in} x{cfg.x_quant_bits}/y{cfg.y_quant_bits} noise {cfg.noise_level}"
            line += " scales " + " ".join(f"{k} {v:g}" for k, v in sc.items())
            if "weight" in sc:
                g = wn.quant.gain(sc["x"], sc["weight"], sc["y"])
                line += f" G {g} (shift {int(np.log2(g)) if g > 0 and (g & (g - 1)) == 0 else '-'})"
                from witnp.array.matrix import weight_codes  # the array's own rule and mask (w_clip included)
                w = layer.params["weight"]
                _, wmask = weight_codes(name, w.reshape(w.shape[0], -1), cfg, sc["weight"])
                line += f" | weights clipped {1.0 - float(wmask.mean()):.2%}"
            line += " io_max " + " ".join(f"{k} {v:.4g}" for k, v in io.items())
        if name in sat:
            line += f" | saturated: inputs {sat[name][0]:.2%} outputs {sat[name][1]:.2%}"
        click.echo(line)
    if findings is not None:
        click.echo("pre-flight (what the chip's mapper enforces): " + ("nothing found" if not findings else
                                                                      f"{len(findings)} finding(s)"))
        for f in findings:
            click.echo(f"  {f}")


def _compare(path, data, json_path, frames, noise_level, noise_seeds):
    from witnp.analysis.compare import compare, format_report
    if json_path:
        _check_outputs(path, [("--json", json_path)])
    model = wn.load(path)
    d = _load_dataset(_data_of(path, data))
    _model_takes(model, d, path)
    report = compare(model, d.x_test[:frames], noise_level=noise_level, noise_seeds=noise_seeds)
    click.echo(f"{path}: {min(frames, len(d.x_test))} test frames of {d.name}; quantized and noisy outputs "
               f"against the float model's, layer by layer")
    click.echo(format_report(report))
    if json_path:
        from witnp.handoff.atomic import write_text
        write_text(json_path, json.dumps(_finite(report), indent=1))
        click.echo(f"wrote {json_path}")


def _finite(v):
    """JSON has no inf: an exact layer's SNR is written as null."""
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _saturation(model, d):
    """Per top-level array layer of a Sequential, on up to 256 test frames: the share of input values clipped at
    the input code range, and of outputs clipped at the output range. An input of exactly 0 is not clipped
    (PN's relu and the other modes code it exactly, though PN's straight-through mask is 0 there)."""
    out = {}
    if not isinstance(model, wn.Sequential):
        return out
    x = d.x_test[:256]
    for name, layer in model.children.items():
        y, ctx = layer.forward(x, train=False)
        masks = layer.clip_masks(ctx) if hasattr(layer, "clip_masks") else None
        if masks is not None:
            xm, xv = np.asarray(masks[0]).reshape(-1), np.asarray(x).reshape(-1)
            clipped = (xm == 0) & (xv != 0) if xm.size == xv.size else (xm == 0)  # unfolded inputs: mask only
            out[name] = (float(clipped.mean()), float((np.asarray(masks[1]) == 0).mean()))
        x = y
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
