"""witnp eval: a model's test metrics, post-training quantization (--quantize) and noise sweeps."""
from __future__ import annotations

import json
import os

import click
import numpy as np

import witnp as wn

from . import runconfig
from .common import _check_outputs, _data_of, _load_dataset, _model_takes, friendly


@click.command("eval")
@click.argument("model_paths", metavar="MODEL...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--data", default=None, help="Dataset name or .npz path (test split) [default: the data the model "
              "file records it was trained on].")
@click.option("--quantize", is_flag=True, help="Evaluate a float model quantized as the recipe quantizes ([quant] "
              "of cli/default.toml), io_max calibrated on the training split (post-training quantization); in a "
              "sweep, the float MODELs among several.")
@click.option("--calibration", default="extrema", show_default=True, metavar="NAME[:P]",
              help="With --quantize: how io_max is calibrated: extrema (the vendor's), moving_average, "
                   "percentile[:P], mse or kl (witnp/analysis/calibration.py).")
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
              help='With --noise-levels: a PNG of the metric against noise level; with --chips: its histogram '
                   'over the chips (needs "witnp[plot]").')
@click.option("--chips", type=click.IntRange(1), default=None, metavar="N",
              help="Score N simulated chips, each with its own programming error kept for all its inferences "
                   "(witnp/analysis/chips.py): mean, std, 5th percentile and worst.")
@click.option("--read-noise", type=click.FloatRange(0), default=None, metavar="R",
              help="With --chips: fresh noise on every read on top of each chip's fixed error, at R times its "
                   "level (0: none, the default; 1: as large).")
@click.option("--integer", is_flag=True, help="Also run the integer engine on an in-memory export.")
@friendly
def eval_(model_paths, data, quantize, calibration, noise_level, noise_levels, noise_seeds, csv_path, json_path,
          plot_path, chips, read_noise, integer):
    """Loss and accuracy of MODEL on the test split; with --noise-levels, against noise level, for one or
    several models."""
    from witnp.analysis.calibration import parse_strategy
    cal = parse_strategy(calibration)
    if calibration != "extrema" and not quantize:
        raise click.UsageError("--calibration goes with --quantize (it calibrates a float model's io_max)")
    if read_noise is not None and chips is None:
        raise click.UsageError("--read-noise goes with --chips (read noise on top of each chip's fixed error)")
    if read_noise is not None and not np.isfinite(read_noise):
        raise click.UsageError(f"--read-noise {read_noise}: expected a finite number >= 0")
    if chips is not None:
        if noise_levels is not None or integer or csv_path or len(model_paths) > 1:
            raise click.UsageError("--chips scores one MODEL (with --noise-level, --data, --quantize, --json and "
                                   "--plot)")
        return _chips(model_paths[0], data, quantize, noise_level, chips, json_path, cal, plot_path, read_noise or 0.0)
    if noise_levels is not None:
        return _noise_sweep(model_paths, data, quantize, noise_levels, noise_seeds, csv_path, json_path, plot_path,
                            noise_level, integer, cal)
    if len(model_paths) > 1:
        raise click.UsageError("several MODELs go with --noise-levels (one table); evaluate one MODEL otherwise")
    if csv_path or json_path or plot_path:
        raise click.UsageError("--csv, --json and --plot go with --noise-levels")
    model_path = model_paths[0]
    model = wn.load(model_path)
    d = _load_dataset(_data_of(model_path, data))
    _model_takes(model, d, model_path)
    model = _quantized(model, model_path, d, cal) if quantize else model
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
    runs = [wn.train.evaluate(model, d.x_test, d.y_test, rng=wn.train.noise_eval_rng(s), lengths=d.lengths_test,
                              time_axis=d.time_axis)
            for s in range(noise_seeds if noisy else 1)]
    for k in runs[0]:
        vals = [r[k] for r in runs]
        extra = f" ± {np.std(vals):.4f} over {len(vals)} noise seeds" if noisy else ""
        click.echo(f"{k}: {np.mean(vals):.4f}{extra}")
    if integer:
        from witnp.handoff.engine import IntegerEngine
        from witnp.handoff.export import export_model
        from witnp.train.data import crop, length_groups
        from witnp.train.tasks import main_metric, task_of
        quiet = wn.train.with_config(model, {"noise_level": 0})
        engine = IntegerEngine(export_model(quiet))
        groups = ([np.arange(len(d.x_test))] if d.lengths_test is None else length_groups(d.lengths_test, 256))
        pairs, same = [], True
        for idx in groups:  # variable-length data: each length on its own, as the firmware runs a sequence
            L = d.x_test.shape[d.time_axis] if d.lengths_test is None else int(d.lengths_test[idx[0]])
            xb, yb = crop(d.x_test, d.y_test, idx, L, d.time_axis)
            y_int = engine.run(xb)[0]
            same = same and np.array_equal(y_int, quiet(xb))
            pairs.append((y_int, yb))
        m, v, _ = main_metric(task_of(d.y_test).metrics_groups(pairs))
        click.echo(f"integer engine: {m} {v:.4f}; bit-identical to the quantized model: {same}")


def _need_matplotlib():
    """--plot's extra, checked before any work starts."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise runconfig.RunConfigError('--plot needs matplotlib, which is not installed: pip install "witnp[plot]"')


def _chips(model_path, data, quantize, noise_level, chips, json_path, cal, plot_path=None, read_noise=0.0):
    from witnp.analysis.chips import CHIP_SEED, chip_metrics, summary, write_chip_plot
    _check_outputs(model_path, [(o, p) for o, p in (("--json", json_path), ("--plot", plot_path)) if p])
    if plot_path:
        _need_matplotlib()
    model = wn.load(model_path)
    d = _load_dataset(_data_of(model_path, data))
    _model_takes(model, d, model_path)
    model = _quantized(model, model_path, d, cal) if quantize else model
    runs = chip_metrics(model, d.x_test, d.y_test, chips, noise_level, read_noise=read_noise, lengths=d.lengths_test,
                        time_axis=d.time_axis)
    out = {k: summary([r[k] for r in runs], higher_is_better=k != "loss") for k in runs[0]}
    click.echo(f"{model_path} on {chips} simulated chips (seeds {CHIP_SEED}..{CHIP_SEED + chips - 1}; each keeps one "
               f"programming error{f', read noise x{read_noise:g} on top' if read_noise else ''}), {d.name} test "
               f"split:")
    for k, v in out.items():
        tail = f"5th percentile {v['p5']:.4f}" if "p5" in v else f"95th percentile {v['p95']:.4f}"
        click.echo(f"{k}: {v['mean']:.4f} ± {v['std']:.4f}, {tail}, worst {v['worst']:.4f}")
    if json_path:
        from witnp.handoff.atomic import write_text
        write_text(json_path, json.dumps({"summary": out, "read_noise": read_noise, "chips": runs}, indent=1))
        click.echo(f"wrote {json_path}")
    if plot_path:
        from witnp.train.tasks import main_metric
        metric = main_metric(runs[0])[0]
        write_chip_plot(plot_path, [r[metric] for r in runs], metric, os.path.basename(model_path))
        click.echo(f"wrote {plot_path}")


def _quantized(model, model_path, d, cal=("extrema", None)):
    """--quantize: a float model with quantization on, io_max calibrated on the training split (as a quantized
    stage that starts from a float model does)."""
    if any(l.config is not None and l.config.use_quantization for _, l in wn.walk(model)):
        raise runconfig.RunConfigError(f"--quantize: {model_path} is already quantized; evaluate it without "
                                       f"--quantize")
    changes = dict(runconfig.read_toml(runconfig.DEFAULT_TOML)["quant"], use_quantization=True, noise_level=0)
    q = wn.train.with_config(model, changes)  # the recipe's quantization ([quant] of cli/default.toml)
    wn.train.calibrate(q, d.x_train, strategy=cal[0], param=cal[1], lengths=d.lengths_train, time_axis=d.time_axis)
    return q


def _noise_sweep(model_paths, data, quantize, levels_text, seeds, csv_path, json_path, plot_path, noise_level,
                 integer, cal):
    from witnp.analysis.noise_sweep import format_sweep, noise_sweep, parse_levels, write_csv, write_json, write_plot
    if noise_level is not None or integer:
        raise click.UsageError("--noise-levels sweeps the levels: --noise-level and --integer go without it")
    levels = parse_levels(levels_text)
    outs = [(o, p) for o, p in (("--csv", csv_path), ("--json", json_path), ("--plot", plot_path)) if p]
    for mp in model_paths:
        _check_outputs(mp, outs)
    if plot_path:
        _need_matplotlib()
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
            model, name = _quantized(model, mp, d, cal), f"{name} (PTQ)"
        models[name] = model
    rows = noise_sweep(models, d.x_test, d.y_test, levels, seeds, lengths=d.lengths_test, time_axis=d.time_axis)
    click.echo(f"{d.name} test split, {len(d.x_test)} frames; noisy levels over {seeds} seeds")
    click.echo(format_sweep(rows))
    for path, write in ((csv_path, write_csv), (json_path, write_json), (plot_path, write_plot)):
        if path:
            write(path, rows)
            click.echo(f"wrote {path}")
