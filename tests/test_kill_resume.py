"""Kills and resumes of `witnp train`, and kills of model saves: nothing torn, nothing lost.

- A run killed (SIGKILL) in its QAT stage and resumed with --resume ends with exactly the uninterrupted run's
  weights, metrics (all but wall time) and evaluation table; Ctrl-C (SIGINT) says how to resume.
- Runs killed at many moments leave only files that load (the old or the new version) and temporaries that
  the next run removes.
- A process saving a large model over and over, killed at random moments, leaves the old or the new file.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import witnp as wn
from witnp.handoff.atomic import is_temporary

CONFIG = """seed = 0
data = "digits"
batch_size = 32
noise_seeds = 2
[[stages]]
name = "float"
epochs = 3
lr = 0.003
use_quantization = false
[[stages]]
name = "qat"
epochs = 6
lr = 0.001
use_quantization = true
[[stages]]
name = "nat"
epochs = 2
lr = 0.001
use_quantization = true
noise_level = 4
"""


def _cmd(tmp_path, out, *extra):
    return [sys.executable, "-m", "witnp.cli.main", "train", "--config", str(tmp_path / "run.toml"), "--out",
            str(out), "--no-progress", *extra]


def _env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    tmp = tmp_path_factory.mktemp("kill")
    (tmp / "run.toml").write_text(CONFIG)
    r = subprocess.run(_cmd(tmp, tmp / "whole"), env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp, tmp / "whole"


def _rows(folder):
    with open(folder / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]


def _params(path):
    m = wn.load(path)
    return {n: (p.copy()) for n, p in m.named_params()}, {n: {k: np.array(v) for k, v in l.stats.items()}
                                                            for n, l in wn.walk(m)}


def assert_same_run(a, b):
    """Everything a run leaves, but wall time: per-stage and final weights and stats, metrics, table."""
    for f in ("float.h5", "qat.h5", "nat.h5", "best.h5", "last.h5"):
        pa, sa = _params(a / f)
        pb, sb = _params(b / f)
        assert pa.keys() == pb.keys()
        for k in pa:
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=f"{f} {k}")
        for k in sa:
            for s in sa[k]:
                np.testing.assert_array_equal(sa[k][s], sb[k][s], err_msg=f"{f} {k} {s}")
    assert _rows(a) == _rows(b)
    assert (a / "eval.json").read_text() == (b / "eval.json").read_text()
    assert (a / "eval.txt").read_text() == (b / "eval.txt").read_text()
    assert (a / "metrics.csv").read_text().count("\n") == (b / "metrics.csv").read_text().count("\n") == 12


def _start_and_stop_in(tmp, out, stage, sig):
    """Start a run and send `sig` once `stage` has a metrics row and a checkpoint (polled every 2 ms)."""
    p = subprocess.Popen(_cmd(tmp, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        try:
            with open(out / "metrics.jsonl") as f:
                if any(json.loads(line)["stage"] == stage for line in f if line.strip()) and \
                        (out / "checkpoints" / f"{stage}.h5").exists():
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    assert p.poll() is None, "the run ended before it could be stopped"
    p.send_signal(sig)
    out_text, err_text = p.communicate(timeout=120)
    return p.returncode, out_text, err_text


def test_killed_in_qat_and_resumed_equals_the_uninterrupted_run(reference):
    tmp, whole = reference
    out = tmp / "killed"
    rc, _, _ = _start_and_stop_in(tmp, out, "qat", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    state = json.loads((out / "recipe.json").read_text())
    assert state["done"] == ["float"]  # killed inside the QAT stage
    again = subprocess.run(_cmd(tmp, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--resume" in again.stderr  # the same command without --resume refuses
    r = subprocess.run(_cmd(tmp, out, "--resume"), env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "float: finished before, kept" in r.stdout
    assert "qat epoch 1/6" not in r.stdout and "qat epoch 6/6" in r.stdout  # continued from the checkpoint
    assert_same_run(whole, out)


def test_ctrl_c_says_how_to_resume(reference):
    tmp, whole = reference
    out = tmp / "interrupted"
    rc, _, err = _start_and_stop_in(tmp, out, "qat", signal.SIGINT)
    assert rc == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    r = subprocess.run(_cmd(tmp, out, "--resume"), env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_same_run(whole, out)


def _check_folder_readable(folder):
    """Every file present is whole: models load, JSON parses, CSV rows have the header's width."""
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            if is_temporary(f):
                continue
            if f.endswith(".h5"):
                wn.handoff.model_file.load_checkpoint(p)
            elif f.endswith(".json"):
                json.loads(open(p).read())
            elif f.endswith(".jsonl"):
                [json.loads(line) for line in open(p)]
            elif f.endswith(".csv"):
                lines = open(p).read().splitlines()
                assert all(line.count(",") == lines[0].count(",") for line in lines), p


def test_kills_at_many_moments_leave_only_whole_files(reference):
    tmp, whole = reference
    for i, delay in enumerate(np.linspace(0.4, 3.0, 8)):
        out = tmp / f"many{i}"
        p = subprocess.Popen(_cmd(tmp, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait(timeout=60)
        _check_folder_readable(out)
        extra = ["--resume"] if (out / "config.json").exists() else []
        r = subprocess.run(_cmd(tmp, out, *extra), env=_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"delay {delay}: {r.stdout}{r.stderr}"
        left = [f for _, _, fs in os.walk(out) for f in fs if is_temporary(f)]
        assert left == [], f"temporaries survived the next run: {left}"
        assert_same_run(whole, out)


SAVER = """
import sys, numpy as np, witnp as wn
m = wn.Sequential(wn.Linear(1500, 1500), wn.Linear(1500, 10))
print("ready", flush=True)
v = 0
while True:
    v += 1
    for _, p in m.named_params():
        p[...] = v
    wn.save(m, sys.argv[1])
    print(v, flush=True)
"""


def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_file(tmp_path):
    """A 9 MB model saved again and again (the largest write of a run is this size class); SIGKILL at 12
    moments. The file is absent (killed before the first save finished) or a whole save of some version."""
    from witnp.handoff.atomic import remove_stale_temporaries
    target = tmp_path / "m.h5"
    rng = np.random.default_rng(7)
    seen_versions = set()
    for _ in range(12):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        p.kill()
        p.wait(timeout=60)
        if target.exists():
            m = wn.load(target)
            vals = {float(np.unique(a)[0]) for _, a in m.named_params() if np.unique(a).size == 1}
            assert len(vals) == 1 and all(np.unique(a).size == 1 for _, a in m.named_params())
            seen_versions |= vals
        removed = remove_stale_temporaries(tmp_path)
        assert all(is_temporary(f) for f in removed)
        assert [f for f in os.listdir(tmp_path) if f != "m.h5"] == []
    assert seen_versions  # some kill landed after a completed save
