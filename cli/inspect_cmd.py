"""witnp inspect: a model or handoff file layer by layer (scales, G, io_max, saturation, pre-flight), and with
--compare where the quantized and noisy model lose accuracy."""
from __future__ import annotations

import json

import click
import numpy as np

import witnp as wn

from .common import _check_outputs, _data_of, _load_dataset, _model_takes, friendly


@click.command()
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
