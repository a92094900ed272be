"""witnp sweep: one run config over a grid of settings (and seeds), each point a `witnp train` run in its own
folder, on a local Dask cluster, an existing one (--scheduler) or a local process pool. Resumable: the same
command again keeps finished points, resumes interrupted ones and runs the rest."""
from __future__ import annotations

import json
import os
import time

import click

from . import runconfig
from .common import exit_on_interrupt, friendly
from .run_folder import _first_difference

SWEEP_RECORD = "sweep.json"
POINTS = "points"


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Run configuration (TOML) of every "
              "point [default: cli/default.toml's run].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key for every point "
              "(as witnp train --set). Repeatable.")
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...", help="Sweep a dotted config key "
              "over these TOML values (any key --set takes). Repeatable: the points are every combination.")
@click.option("--seeds", type=click.IntRange(1), default=None, metavar="N", help="Also sweep `seed` over 0..N-1.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Sweep folder: results.csv, "
              "results.jsonl, summary.txt and points/<point>/ (each a witnp train run folder).")
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Run on the Dask cluster at this scheduler "
              "address (tcp://HOST:PORT); --out must be on a filesystem its workers share.")
@click.option("--workers", type=click.IntRange(1), default=None, metavar="N", help="Local workers (processes, one "
              "thread each) [default: one per core, at most one per point].")
@click.option("--executor", type=click.Choice(["auto", "dask", "processes"]), default="auto", show_default=True,
              help="auto: a local Dask cluster when witnp[dask] is installed, else a local process pool.")
@friendly
def sweep(config_path, sets, grid_items, seeds, out, scheduler, workers, executor):
    """Run the run config once per point of the grid; rank the points.

    Every point is checked before any runs (its config, data and model); a failed point's error lands in its
    row and the sweep goes on."""
    from witnp.sweep.executors import resolve_executor, run_tasks
    from witnp.sweep.grid import expand, parse_grid
    from witnp.sweep.results import ResultsStore
    if not grid_items and seeds is None:
        raise click.UsageError("nothing to sweep: give --grid KEY=V1,V2,... and/or --seeds N")
    grid = parse_grid(grid_items)
    if any(k == "out" for k, _ in grid):
        raise click.UsageError("--grid out=...: every point has its own run folder under --out")
    points = expand(grid, seeds)
    executor = resolve_executor(executor, scheduler)
    base = runconfig.resolve(config_path, sets)
    base.pop("out", None)
    out = os.path.abspath(out)
    record = {"config": base, "grid": [[k, v] for k, v in grid], "seeds": seeds}
    _check_sweep_folder(out, record)
    tasks, data = _tasks(points, config_path, sets, out)
    keys = [k for k, _ in grid] + (["seed"] if seeds is not None else [])
    os.makedirs(os.path.join(out, POINTS), exist_ok=True)
    from witnp.handoff.atomic import write_text
    write_text(os.path.join(out, SWEEP_RECORD), json.dumps(record, indent=1))
    store = ResultsStore(out, [p.name for p in points], keys)
    todo = [t for t in tasks if not (store.done(t["name"]) and os.path.exists(os.path.join(t["cfg"]["out"], "eval.json")))]
    kept = len(tasks) - len(todo)
    click.echo(f"witnp sweep: {len(points)} points ({', '.join(f'{k}: {len(v)}' for k, v in grid)}"
               f"{f', seeds: {seeds}' if seeds else ''}) into {out}" + (f"; {kept} finished before, kept" if kept
                                                                         else ""))
    done = failed = 0
    n_workers = workers or os.cpu_count() or 1
    with exit_on_interrupt(lambda: f"finished points are kept in {out}; the same command again runs only what is "
                                   f"missing (interrupted points resume from their checkpoints)"):
        for i, row in run_tasks(run_point, todo, data, executor=executor, workers=workers, scheduler=scheduler,
                                log=click.echo):
            row.setdefault("point", todo[i]["name"])
            row.setdefault("keys", todo[i]["keys"])
            row.setdefault("run", todo[i]["run"])
            store.put(row)
            done += row["status"] == "done"
            failed += row["status"] != "done"
            left = len(todo) - done - failed
            click.echo(f"[{kept + done + failed}/{len(tasks)}] {row['point']}: {_brief(row)} | done {kept + done}, "
                       f"running {min(left, n_workers)}, waiting {max(0, left - n_workers)}, failed {failed}")
    click.echo("\n" + store.write_summary())
    click.echo(f"\nwrote {os.path.join(out, 'results.csv')}, results.jsonl and summary.txt")
    if failed:
        raise click.ClickException(f"{failed} of {len(todo)} points failed (their errors are in results.csv); the "
                                   f"same command again retries them")


def _brief(row: dict) -> str:
    if row["status"] != "done":
        return f"FAILED {row.get('error', '')}"
    from witnp.sweep.results import rank_metric
    rm = rank_metric(row)
    return (f"{rm[0]} {rm[1]} {rm[2]:.4f}" if rm else "done") + f" ({row.get('seconds', 0):.1f} s)"


def _check_sweep_folder(out: str, record: dict) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise runconfig.RunConfigError(f"--out {out}: a file, not a folder; expected a sweep folder path")
    path = os.path.join(out, SWEEP_RECORD)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = _first_difference(old, json.loads(json.dumps(record)), "sweep")
        if diff:
            raise runconfig.RunConfigError(f"{out} holds another sweep ({diff} differs from its {SWEEP_RECORD}); run "
                                           f"the same command to finish it, or pass another --out")
    elif os.path.isdir(out) and os.listdir(out):
        raise runconfig.RunConfigError(f"--out {out}: a folder that holds other files and no sweep; expected a new "
                                       f"or empty folder (or a sweep's, to finish it)")


def _tasks(points, config_path, sets, out):
    """Every point's resolved config, checked before anything runs (config, data, the model on one batch), and
    the datasets, loaded once: {data name or path: Dataset as loaded}."""
    from .train_cmd import _check_fits
    data, tasks = {}, []
    for p in points:
        where = ", ".join(p.sets) or "the base config"
        try:
            cfg = runconfig.resolve(config_path, list(sets) + list(p.sets))
            if cfg["data"] not in data:
                data[cfg["data"]] = runconfig.load_dataset(cfg["data"], "data")
            model, stages = runconfig.build_model(cfg), runconfig.stages_of(cfg)
            _check_fits(model, runconfig.with_validation_split(cfg, data[cfg["data"]]), stages)
        except runconfig.RunConfigError as e:
            raise runconfig.RunConfigError(f"point {where}: {e}") from None
        folder = os.path.join(out, POINTS, p.name)
        cfg["out"] = folder
        started = os.path.exists(os.path.join(folder, "config.json"))
        tasks.append({"name": p.name, "cfg": cfg, "config_path": config_path, "keys": dict(p.assignments),
                      "run": os.path.join(POINTS, p.name), "resume": started, "overwrite": not started})
    return tasks, data


def run_point(task: dict, data: dict) -> dict:
    """One point in a worker: `witnp train` of its config into its run folder (resumed when it was
    interrupted; read back when it had finished), its log in <folder>/train.log. Returns its results row."""
    from witnp.handoff.atomic import write_text
    from .train_cmd import train_run
    t0 = time.perf_counter()
    cfg = task["cfg"]
    row = {"point": task["name"], "keys": task["keys"], "run": task["run"], "stage": cfg["stages"][-1]["name"]}
    lines = []
    finished = os.path.join(cfg["out"], "eval.json")
    try:
        if os.path.exists(finished):
            with open(finished) as f:
                rows = json.load(f)
        else:
            rows = train_run(cfg, data[cfg["data"]], task["config_path"], task["resume"], task["overwrite"], False,
                             lines.append)
        row.update(status="done", eval=json.loads(json.dumps(rows)))
    except Exception as e:  # noqa: BLE001 - the point failed; its row says why and the sweep goes on
        text = str(e).splitlines()[0] if str(e) else ""
        row.update(status="failed", error=f"{type(e).__name__}: {text}" if text else type(e).__name__)
        lines.append(f"failed: {row['error']}")
    row["seconds"] = round(time.perf_counter() - t0, 3)
    if lines and os.path.isdir(cfg["out"]):
        log = os.path.join(cfg["out"], "train.log")
        old = open(log).read() if os.path.exists(log) else ""
        write_text(log, old + "\n".join(lines) + "\n")
    return row
