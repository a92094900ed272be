"""witnp export: the firmware handoff (HDF5, golden vectors, C header, JSON) after the pre-flight check."""
from __future__ import annotations

import os

import click
import numpy as np

import witnp as wn

from . import runconfig
from .common import _check_outputs, _data_of, _load_dataset, _model_takes, friendly


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Handoff HDF5 file.")
@click.option("--golden", type=click.IntRange(0), default=8, show_default=True,
              help="Golden input frames (from the test split of --data) with every layer's expected outputs.")
@click.option("--data", default=None, help="Dataset for the golden frames [default: the data the model file "
              "records it was trained on].")
@click.option("--c-header", type=click.Path(dir_okay=False), help="Also write a C header with the weights.")
@click.option("--c-source", type=click.Path(dir_okay=False), help="Also write a C99 reference of the integer model "
              "(witnp_forward, and witnp_step for streaming GRU models) for one example of the data's input shape.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), help='Also write the integer model as an ONNX '
              'graph (and F.step.onnx for streaming GRU models); needs "witnp[onnx]".')
@click.option("--mapper-pair", "mapper_dir", type=click.Path(file_okay=False), help="Also write the chip mapper's "
              "calibration pair for the golden frames into this folder: expected_in.bin, expected_out.bin ('<i2') "
              "and expected.json.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the gains and shifts as JSON.")
@click.option("--strict", is_flag=True, help="Refuse the export (write nothing) when the pre-flight check finds "
              "anything the chip's mapper would refuse or change.")
@friendly
def export(model_path, output, golden, data, c_header, c_source, onnx_path, mapper_dir, json_path, strict):
    """Export MODEL (quantized) for the firmware: int8 weights, NPU bias, shifts, G, LUTs and golden vectors.
    The pre-flight check of what the chip's mapper enforces runs first; its findings are printed (or, with
    --strict, refuse the export)."""
    from witnp.handoff.export import export_model, golden_vectors, unsigned_input_findings, write_c_header, \
        write_gains_json, write_handoff, write_mapper_pair
    if mapper_dir and not golden:
        raise click.UsageError("--mapper-pair writes the golden frames' codes; give --golden N (N >= 1)")
    outs = [("-o", output), ("--c-header", c_header), ("--c-source", c_source), ("--onnx", onnx_path),
            ("--json", json_path)]
    if onnx_path:
        from witnp.handoff.onnx_export import need_onnx
        need_onnx()  # the extra, before any work
        step_path = (onnx_path[:-5] if onnx_path.endswith(".onnx") else onnx_path) + ".step.onnx"
        outs.append(("--onnx (its step graph)", step_path))
    _check_outputs(model_path, [(o, p) for o, p in outs if p])
    model = wn.train.with_config(wn.load(model_path), {"noise_level": 0})
    findings = []  # the pre-flight check (`export.preflight`): the export's own findings, then the data's
    records = export_model(model, warn=findings.append)
    d = None
    if mapper_dir:
        if os.path.exists(mapper_dir) and not os.path.isdir(mapper_dir):
            raise runconfig.RunConfigError(f"--mapper-pair {mapper_dir}: a file, not a folder")
        outs += ([("--mapper-pair", os.path.join(mapper_dir, f)) for f in ("expected_in.bin", "expected_out.bin",
                                                                           "expected.json")]
                 if os.path.isdir(mapper_dir) else [("--mapper-pair", mapper_dir)])  # made after the checks
        _check_outputs(model_path, [(o, p) for o, p in outs if p])
    if golden or c_source or onnx_path:
        d = _load_dataset(_data_of(model_path, data))
        _model_takes(model, d, model_path)
        findings += unsigned_input_findings(model, d.x_test[:256])
    csrc = None
    if c_source:  # built before anything is written: a layer it cannot run is refused first
        from witnp.handoff.c_source import c_source as make_c
        csrc = make_c(records, d.x_test.shape[1:])
    graphs = None
    if onnx_path:  # built before anything is written, as the C reference
        from witnp.handoff.engine import streams
        from witnp.handoff.onnx_export import onnx_model
        graphs = (onnx_model(records, d.x_test.shape[1:]),
                  onnx_model(records, d.x_test.shape[2:], stream=True) if streams(records) else None)
    if strict and findings:
        raise runconfig.RunConfigError(f"--strict: the pre-flight check found {len(findings)} problem(s), nothing "
                                       f"written; the first: {findings[0]}")
    if records:
        records[0][1]["warnings"] = list(findings)  # kept in the handoff file's attributes, as before
    gold = run = None
    if golden:
        if golden > len(d.x_test):
            raise runconfig.RunConfigError(f"--golden {golden}: the test split of {d.name} has {len(d.x_test)} "
                                           f"frames; expected at most {len(d.x_test)}")
        from witnp.handoff.engine import IntegerEngine
        run = IntegerEngine(records).run(d.x_test[:golden], trace=True)  # once, for the golden vectors and pair
        gold = golden_vectors(model, records, d.x_test[:golden], run=run)
        if not np.array_equal(gold["engine_output"], gold["output"]):  # pragma: no cover - a bug if reached
            raise ValueError("the integer engine does not reproduce the model on the golden frames")
    write_handoff(output, records, gold)
    if c_header:
        write_c_header(c_header, records)
    if csrc is not None:
        from witnp.handoff.atomic import write_text
        write_text(c_source, csrc)
    if graphs is not None:
        from witnp.handoff.atomic import write_bytes
        for g, p in zip(graphs, (onnx_path, step_path)):
            if g is not None:
                write_bytes(p, g.SerializeToString())
                click.echo(f"wrote {p}")
    if json_path:
        write_gains_json(json_path, records)
    if mapper_dir:
        os.makedirs(mapper_dir, exist_ok=True)
        desc = write_mapper_pair(mapper_dir, records, d.x_test[:golden], run=run)
        click.echo(f"wrote {mapper_dir}/expected_in.bin {tuple([desc['n']] + desc['in_shape'])} and expected_out.bin "
                   f"{tuple([desc['n']] + desc['out_shape'])} (int16, little-endian), expected.json")
    for w in findings:
        click.echo(f"pre-flight: {w}", err=True)
    click.echo(f"wrote {output}: {len(records)} layers" + (f", {golden} golden frames" if gold else ""))
