"""witnp search-bits: the smallest input and output bit widths per array layer that keep the quantized metric
within a budget, on the sweep's executors (witnp/sweep/bits.py has the search and its cost)."""
from __future__ import annotations

import csv
import io
import json
import os

import click

from . import runconfig
from .common import friendly


@click.command("search-bits")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Run configuration (TOML) "
              "[default: cli/default.toml's run].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (as witnp train).")
@click.option("--budget", type=float, required=True, metavar="POINTS", help="How far below the reference the "
              "quantized metric may fall: percentage points of accuracy (0.5 = half a point), dB of SNR.")
@click.option("--reference", type=click.Choice(["12bit", "float"]), default="12bit", show_default=True,
              help="What the budget is measured from: every array layer at 12 bits, or the float model.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A trained float model to start from [default: train the config's float stages].")
@click.option("--finetune-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="QAT epochs per candidate after calibration (at the first quantized stage's lr).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for the float run, "
              "overrides.toml and search.csv [default: the config's out + '-bits'].")
@click.option("--workers", type=click.IntRange(1), default=None, metavar="N", help="Local workers.")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="A Dask scheduler (tcp://HOST:PORT).")
@click.option("--executor", type=click.Choice(["auto", "dask", "processes"]), default="auto", show_default=True)
@friendly
def search_bits(config_path, sets, budget, reference, model_path, finetune_epochs, out, workers, scheduler,
                executor):
    """Find per array layer the smallest x/y bit widths (8..12) within --budget of the reference; print and
    write them as a [model.overrides] block, with the table of what was tried. Candidates are measured on
    the validation split; the test split only reports the result."""
    import math

    import witnp as wn
    from witnp.handoff.atomic import write_text
    from witnp.sweep import bits as sb
    from witnp.sweep.executors import Workers, resolve_executor
    if not math.isfinite(budget) or budget < 0:
        raise click.UsageError(f"--budget {budget}: expected a number >= 0 (points of the metric)")
    executor = resolve_executor(executor, scheduler)
    cfg = runconfig.resolve(config_path, sets)
    out = os.path.abspath(out or cfg["out"].rstrip("/") + "-bits")
    raw = runconfig.load_dataset(cfg["data"], "data")
    data = runconfig.with_validation_split(cfg, raw)
    if data.x_val is None:
        raise runconfig.RunConfigError("val_fraction = 0 and the data has no x_val: search-bits chooses widths on "
                                       "a validation split; set val_fraction (e.g. 0.1) or add x_val / y_val")
    stages = runconfig.stages_of(cfg)
    quantized = [st for st in stages if st.changes.get("use_quantization")]
    if not quantized:
        raise runconfig.RunConfigError("stages: no quantized stage; search-bits quantizes as the config's first "
                                       "quantized stage does ([quant] and model.overrides)")
    float_stages = [s for s in cfg["stages"][:stages.index(quantized[0])]]
    if model_path is None and not float_stages:
        raise runconfig.RunConfigError("stages: the first stage is quantized; give --model FLOAT.h5 or a float "
                                       "stage to train first")
    check = runconfig.build_model(cfg)
    names = sb.array_layers(check)
    if not names:
        raise runconfig.RunConfigError("model: no array layer (Linear, Conv1d/2d, ConvTranspose2d, GRU) in its "
                                       "Sequential chains to choose widths for")
    if os.path.exists(out) and not os.path.isdir(out):
        raise runconfig.RunConfigError(f"--out {out}: a file, not a folder")
    model = wn.load(model_path) if model_path else _float_model(cfg, float_stages, raw, config_path, out)
    if sb.array_layers(model) != names:
        raise runconfig.RunConfigError(f"--model {model_path}: its array layers {sb.array_layers(model)} are not "
                                       f"the config's {names}")
    q = quantized[0]
    base = {"quant": {k: v for k, v in q.changes.items() if k != "noise_level"},
            "per_layer": {n: {k: v for k, v in o.items() if k not in ("x_quant_bits", "y_quant_bits")}
                          for n, o in q.per_layer.items()},
            "calibration": cfg.get("calibration", "extrema"), "layer_calibration": runconfig.layer_calibration(cfg),
            "batch_size": cfg.get("batch_size", 32), "finetune_epochs": finetune_epochs, "lr": q.lr,
            "seed": cfg.get("seed", 0)}
    shared = {"model": model, "data": data}
    costs = sb.layer_cost(wn.train.with_config(model, base["quant"], base["per_layer"]), data.x_train[:1])
    pool = Workers(shared, executor=executor, workers=workers, scheduler=scheduler, log=click.echo)

    def run(cands, test=False):
        tasks = [dict(base, bits={n: list(b) for n, b in c.items()}, test=test) for c in cands]
        res = [None] * len(tasks)
        for i, r in pool.map(sb.evaluate_candidate, tasks):
            res[i] = r
        return res

    ref = None
    if reference == "float":
        fl = wn.train.evaluate(wn.train.with_config(model, {"use_quantization": False, "noise_level": 0}),
                               data.x_val, data.y_val, lengths=data.lengths_val, time_axis=data.time_axis)
        from witnp.train.tasks import main_metric
        ref = main_metric(fl)[1]
    click.echo(f"witnp search-bits: {len(names)} array layers ({', '.join(names)}), widths 8..12 (GRUs: 8-bit in, "
               f"8..10 out), budget {budget} "
               f"points from the {'float model' if ref is not None else 'all-12-bit model'}; candidates on the "
               f"validation split ({len(data.x_val)} examples), {executor} executor")
    widest = sb.widest(costs, names)
    with pool:
        found = sb.search(names, costs, budget, run, reference=ref, log=click.echo)
        final = run([found["bits"], {n: (8, 8) for n in names}, widest], test=True)
    types = {n: type(layer).__name__ for n, layer in wn.walk(model)}
    block = sb.overrides_toml(found["bits"], types)
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "overrides.toml"), block)
    write_text(os.path.join(out, "search.csv"), _tried_csv(found["tried"], names))
    rows = [("found", found["bits"], final[0]), ("all 8-bit", {n: (8, 8) for n in names}, final[1]),
            ("all 12-bit", widest, final[2])]
    metric = found["metric"]
    table = [f"{'':10s}  {'val ' + metric:>14s}  {'test ' + metric:>14s}  {'digital MACs':>12s}  {'output bits':>11s}"]
    for label, b, r in rows:
        c = sb.total_cost(costs, b)
        table.append(f"{label:10s}  {_fmt(r['val'], metric):>14s}  {_fmt(r['test'], metric):>14s}  "
                     f"{c['digital_macs']:>12d}  {c['output_bits']:>11d}")
    summary = "\n".join(table)
    write_text(os.path.join(out, "result.json"), json.dumps({
        "bits": found["bits"], "met": found["met"], "budget": budget, "reference": reference,
        "rows": {label: {"bits": b, "val": r["val"], "test": r["test"], **sb.total_cost(costs, b)}
                 for label, b, r in rows}}, indent=1))
    click.echo("\n" + summary + "\n\n" + block)
    click.echo(f"wrote {os.path.join(out, 'overrides.toml')} (paste into the run config), search.csv "
               f"({len(found['tried'])} candidates) and result.json")
    if not found["met"]:
        raise click.ClickException(f"no widths up to 12 bits keep the metric within {budget} points of the "
                                   f"{reference} reference; the block above is the closest (all the widest)")


def _fmt(r, metric):
    from witnp.train.tasks import format_metric
    return format_metric(metric, r[metric])


def _tried_csv(tried, names):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["phase"] + [f"{n}.{t}" for n in names for t in ("x_bits", "y_bits")]
               + ["metric", "value", "digital_macs", "output_bits", "cost"])
    for t in tried:
        w.writerow([t["phase"]] + [b for n in names for b in t["bits"][n]]
                   + [t["metric"], t["value"], t["digital_macs"], t["output_bits"], t["cost"]])
    return buf.getvalue()


def _float_model(cfg, float_stages, raw, config_path, out):
    """The config's float stages trained in <out>/float (kept when finished, resumed when interrupted)."""
    import witnp as wn
    from .train_cmd import train_run
    folder = os.path.join(out, "float")
    fcfg = dict(cfg, stages=float_stages, out=folder)
    if not os.path.exists(os.path.join(folder, "eval.json")):
        started = os.path.exists(os.path.join(folder, "config.json"))
        click.echo(f"training the float model ({', '.join(s['name'] for s in float_stages)}) in {folder}")
        train_run(fcfg, raw, config_path, started, not started, None, lambda s: None)
    return wn.load(os.path.join(folder, "best.h5"))
