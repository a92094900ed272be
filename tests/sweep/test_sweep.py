"""witnp sweep: the same points on a local process pool and a local Dask cluster of 2 process workers give
the same results, equal bit for bit to separate `witnp train` runs; a failed point's error lands in its row;
a killed sweep run again finishes only what was missing."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.sweep.executors import dask_available

STAGES = ["--set", "stages=[{name='float',epochs=1,lr=0.01},{name='qat',epochs=1,lr=0.002,use_quantization=true}]",
          "--set", "noise_seeds=2", "--set", "batch_size=64"]
GRID = ["--grid", "quant.y_quant_bits=8,10", "--seeds", "2"]


def _rows(folder):
    """results.jsonl without the wall times."""
    with open(os.path.join(folder, "results.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]


def _sweep(out, *extra):
    r = CliRunner().invoke(main, ["sweep", *STAGES, *GRID, "--out", str(out), "--workers", "2", *extra])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "pool"
    return out, _sweep(out, "--executor", "processes")


def test_pool_sweep_writes_a_row_per_point_and_ranks_them(pool_sweep):
    out, r = pool_sweep
    rows = _rows(out)
    assert [(row["keys"]["quant.y_quant_bits"], row["keys"]["seed"]) for row in rows] == \
        [("8", "0"), ("8", "1"), ("10", "0"), ("10", "1")]
    assert all(row["status"] == "done" and set(row["eval"]) == {"float", "qat"} for row in rows)
    head = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert head[:4] == ["point", "quant.y_quant_bits", "seed", "status"] and "noisy_accuracy_mean" in head
    summary = (out / "summary.txt").read_text()
    means = {b: np.mean([row["eval"]["qat"]["noisy"]["accuracy"][0] for row in rows
                         if row["keys"]["quant.y_quant_bits"] == b]) for b in ("8", "10")}
    best = max(means, key=means.get)
    first = summary.splitlines()[2].split()
    assert first[:2] == ["1", best] and float(first[2]) == pytest.approx(means[best], abs=5e-5)
    assert "local process pool, 2 workers" in r.output and "[4/4]" in r.output


def test_each_point_equals_a_separate_witnp_train(pool_sweep, tmp_path):
    out, _ = pool_sweep
    for bits, seed in (("10", "1"), ("8", "0")):
        r = CliRunner().invoke(main, ["train", *STAGES, "--set", f"quant.y_quant_bits={bits}", "--set",
                                      f"seed={seed}", "--out", str(tmp_path / f"b{bits}s{seed}"), "--no-progress"])
        assert r.exit_code == 0, r.output
        row = next(x for x in _rows(out) if x["keys"] == {"quant.y_quant_bits": bits, "seed": seed})
        alone = tmp_path / f"b{bits}s{seed}"
        assert json.loads((alone / "eval.json").read_text()) == row["eval"]
        a, b = wn.load(alone / "best.h5"), wn.load(out / row["run"] / "best.h5")
        for (ka, va), (kb, vb) in zip([*a.named_params(), *a.named_stats()], [*b.named_params(), *b.named_stats()],
                                      strict=True):
            assert ka == kb
            np.testing.assert_array_equal(va, vb, err_msg=ka)


@pytest.mark.skipif(not dask_available(), reason='needs the dask extra: pip install "witnp[dask]"')
def test_a_local_dask_cluster_gives_the_pools_results(pool_sweep, tmp_path):
    out, _ = pool_sweep
    r = _sweep(tmp_path / "dask", "--executor", "dask")
    assert "local Dask cluster, 2 process workers" in r.output
    assert _rows(tmp_path / "dask") == _rows(out)


def test_a_failed_point_is_reported_and_the_sweep_goes_on(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "--set", "stages=[{name='float',epochs=1,lr=0.01}]", "--set",
                                  "noise_seeds=2", "--grid", "stages.0.lr=0.01,1e30", "--out", str(tmp_path / "s"),
                                  "--executor", "processes"])
    assert r.exit_code == 1 and "1 of 2 points failed" in r.output
    rows = {row["keys"]["stages.0.lr"]: row for row in _rows(tmp_path / "s")}
    assert rows["0.01"]["status"] == "done"
    assert rows["1e30"]["status"] == "failed" and rows["1e30"]["error"].startswith("TrainingDiverged")
    assert "1 failed point" in (tmp_path / "s" / "summary.txt").read_text()


def test_a_killed_sweep_finishes_only_what_was_missing(pool_sweep, tmp_path):
    ref, _ = pool_sweep
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "witnp.cli.main", "sweep", *STAGES, *GRID, "--out", str(out), "--workers", "2",
           "--executor", "processes"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if (out / "results.jsonl").exists() and (out / "results.jsonl").read_text().strip():
            break
        time.sleep(0.05)
    assert p.poll() is None, "the sweep ended before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)  # the sweep and its workers, as a kill -9 of the session would
    p.wait()
    first = _rows(out)
    assert 1 <= len(first) < 4
    stamps = {row["point"]: os.stat(out / row["run"] / "eval.json").st_mtime_ns for row in first}
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(first)} finished before, kept" in again.stdout
    assert _rows(out) == _rows(ref)  # as if never interrupted
    for point, t in stamps.items():  # finished points were not run again
        row = next(x for x in _rows(out) if x["point"] == point)
        assert os.stat(out / row["run"] / "eval.json").st_mtime_ns == t


def test_another_sweep_in_the_same_folder_is_refused(pool_sweep):
    out, _ = pool_sweep
    r = CliRunner().invoke(main, ["sweep", *STAGES, "--grid", "quant.y_quant_bits=8,12", "--seeds", "2", "--out",
                                  str(out)])
    assert r.exit_code == 1 and "holds another sweep (sweep.grid" in r.output


def test_without_dask_the_dask_executor_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr("witnp.sweep.executors.dask_available", lambda: False)
    for extra in (["--executor", "dask"], ["--scheduler", "tcp://127.0.0.1:8786"]):
        r = CliRunner().invoke(main, ["sweep", "--seeds", "2", "--out", str(tmp_path / "s"), *extra])
        assert r.exit_code == 1 and 'pip install "witnp[dask]"' in r.output and not (tmp_path / "s").exists()


@pytest.mark.skipif(not dask_available(), reason='needs the dask extra: pip install "witnp[dask]"')
def test_an_existing_cluster_runs_the_points_through_scheduler(pool_sweep, tmp_path):
    """--scheduler: a cluster the sweep did not start (here a scheduler and 2 process workers of our own, as
    `dask scheduler` and `dask worker` on other machines would be) gives the same rows. Its workers have 2
    threads each: they still run one point at a time, or two points would share witnp's noise generator."""
    import logging

    from dask.distributed import LocalCluster
    ref, _ = pool_sweep
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:
        r = CliRunner().invoke(main, ["sweep", *STAGES, *GRID, "--out", str(tmp_path / "c"), "--scheduler",
                                      cluster.scheduler_address])
    assert r.exit_code == 0, r.output
    assert f"Dask cluster at {cluster.scheduler_address} (2 workers)" in r.output
    assert _rows(tmp_path / "c") == _rows(ref)
