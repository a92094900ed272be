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

from . import runconfig

EXIT_ERRORS = (ValueError, TypeError, OSError, KeyError, wn.ModelFileError)


def friendly(fn):
    """Turn library errors into one-line click errors unless --debug was given."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except EXIT_ERRORS + (wn.train.TrainingDiverged,) as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(wn.__version__, prog_name="witnp")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx, debug):
    """Train and deploy neural networks for analog compute-in-memory chips (WTM2101 class)."""
    ctx.ensure_object(dict)["debug"] = debug
    if os.environ.get("WITNP_KEEP_FREED_MEMORY", "1") != "0":
        wn.keep_freed_memory()  # steps reuse freed pages instead of faulting in new ones (witnp/memory.py)


def _load_dataset(data):
    from witnp import _data
    from witnp.train.data import load_npz
    return load_npz(_data.path(data) if data in _data.names() else data)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Run configuration (TOML).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (dotted; TOML value), e.g. --set stages.0.epochs=2. Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (overrides the config's `out`).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@friendly
def train(config_path, sets, out, progress):
    """Train a model through the float -> QAT -> NAT recipe; with no arguments, the default CNN on the shipped
    digits. Writes the resolved config, per-stage and best/last models, metrics and the evaluation table."""
    cfg = runconfig.resolve(config_path, sets)
    if out:
        cfg["out"] = out
    data = runconfig.load_data(cfg)
    wn.manual_seed(int(cfg.get("seed", 0)))
    model = runconfig.build_model(cfg)
    stages = runconfig.stages_of(cfg)
    try:  # does the model fit the data? one sample through it before any training
        y = model(data.x_train[:1])
    except ValueError as e:
        raise runconfig.RunConfigError(f"the model does not fit the data {data.name} (x {data.x_train.shape[1:]}):"
                                       f" {e}") from None
    if data.n_classes is not None and (y.ndim != 2 or y.shape[1] != data.n_classes):
        raise runconfig.RunConfigError(f"the model outputs shape {y.shape[1:]} per sample; the data has "
                                       f"{data.n_classes} classes")
    folder = cfg["out"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    click.echo(f"witnp train: {len(data.x_train)} training / {len(data.x_test)} test samples from {data.name}; "
               f"stages {', '.join(s.name for s in stages)}; run folder {folder}")
    t0 = time.perf_counter()
    model, rows, _ = wn.train.run_recipe(
        model, data, stages, optimizer=cfg.get("optimizer", "adam"), batch_size=int(cfg.get("batch_size", 32)),
        seed=int(cfg.get("seed", 0)), patience=int(cfg.get("patience", 0)) or None,
        noise_level=int(cfg.get("noise_level", 4)), noise_seeds=int(cfg.get("noise_seeds", 5)), out_dir=folder,
        log=click.echo, progress=progress)
    table = wn.train.format_table(rows, int(cfg.get("noise_level", 4)), int(cfg.get("noise_seeds", 5)))
    wn.save(model, os.path.join(folder, "best.h5"))
    last = os.path.join(folder, "checkpoints", f"{stages[-1].name}.h5")
    if os.path.exists(last):  # the final stage's last epoch (a checkpoint: optimizer and generator states too)
        import shutil
        shutil.copyfile(last, os.path.join(folder, "last.h5"))
    with open(os.path.join(folder, "eval.txt"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(folder, "eval.json"), "w") as f:
        json.dump(rows, f, indent=2)
    click.echo("\n" + table)
    click.echo(f"\ndone in {time.perf_counter() - t0:.1f} s; best model: {os.path.join(folder, 'best.h5')}")


@main.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", default="digits", show_default=True, help="Dataset name or .npz path (test split).")
@click.option("--noise-level", type=click.IntRange(0, 9), default=None,
              help="Evaluate with this NORMAL noise level (default: the model's own).")
@click.option("--noise-seeds", type=click.IntRange(1), default=5, show_default=True,
              help="Noise seeds averaged when noise is on.")
@click.option("--integer", is_flag=True, help="Also run the integer engine on an in-memory export.")
@friendly
def eval_(model_path, data, noise_level, noise_seeds, integer):
    """Loss and accuracy of MODEL on the test split."""
    model = wn.load(model_path)
    d = _load_dataset(data)
    if noise_level is not None:
        model = wn.train.with_config(model, {"noise_level": noise_level})
    noisy = any(l.config is not None and l.config.use_quantization and l.config.noise_level
                for _, l in wn.walk(model))
    runs = [wn.train.evaluate(model, d.x_test, d.y_test, rng=np.random.default_rng(s))
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


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Handoff HDF5 file.")
@click.option("--golden", type=click.IntRange(0), default=8, show_default=True,
              help="Golden input frames (from the test split of --data) with every layer's expected outputs.")
@click.option("--data", default="digits", show_default=True, help="Dataset for the golden frames.")
@click.option("--c-header", type=click.Path(dir_okay=False), help="Also write a C header with the weights.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the gains and shifts as JSON.")
@friendly
def export(model_path, output, golden, data, c_header, json_path):
    """Export MODEL (quantized) for the firmware: int8 weights, NPU bias, shifts, G, LUTs and golden vectors."""
    from witnp.handoff.export import export_model, golden_vectors, write_c_header, write_gains_json, write_handoff
    model = wn.train.with_config(wn.load(model_path), {"noise_level": 0})
    records = export_model(model)
    gold = None
    if golden:
        d = _load_dataset(data)
        gold = golden_vectors(model, records, d.x_test[:golden])
        if not np.array_equal(gold["engine_output"], gold["output"]):  # pragma: no cover - a bug if reached
            raise ValueError("the integer engine does not reproduce the model on the golden frames")
    write_handoff(output, records, gold)
    if c_header:
        write_c_header(c_header, records)
    if json_path:
        write_gains_json(json_path, records)
    for w in records[0][1].get("warnings", []):
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {output}: {len(records)} layers" + (f", {golden} golden frames" if gold else ""))


@main.command()
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", default=None, help="Dataset whose test split measures activation saturation.")
@friendly
def inspect(path, data):
    """Layers, shapes, scales, G and shifts, io_max and saturation of a model or handoff file."""
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
    sat = _saturation(model, _load_dataset(data)) if data else {}
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
                w = layer.params["weight"]
                line += f" | weights clipped {float((np.abs(w * sc['weight']) > 127.5).mean()):.2%}"
            line += " io_max " + " ".join(f"{k} {v:.4g}" for k, v in io.items())
        if name in sat:
            line += f" | saturated: inputs {sat[name][0]:.2%} outputs {sat[name][1]:.2%}"
        click.echo(line)


def _saturation(model, d):
    """Fraction of clipped inputs and saturated outputs of each top-level array layer on the test split."""
    out = {}
    _, ctxs = model.forward(d.x_test[:256], train=False)
    if not isinstance(model, wn.Sequential):
        return out
    for (name, layer), ctx in zip(model.children.items(), ctxs):
        a = ctx.get("array", ctx) if isinstance(ctx, dict) else None
        if a and "ymask" in a and "xmask" in a:
            out[name] = (float((a["xmask"] == 0).mean()), float((a["ymask"] == 0).mean()))
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
