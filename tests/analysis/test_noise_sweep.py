"""witnp eval --noise-levels: mean ± std per level for one or several models, CSV / JSON / PNG, --quantize."""
import csv
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.analysis.noise_sweep import noise_sweep, parse_levels
from witnp.cli.main import main

FAST = ["--set", "stages.0.epochs=1", "--set", "stages.1.epochs=1", "--set", "stages.2.epochs=1",
        "--set", "noise_seeds=2", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    r = CliRunner().invoke(main, ["train", "--out", str(out / "run")] + FAST)
    assert r.exit_code == 0, r.output
    return out


def test_parse_levels():
    assert parse_levels("0-3") == [0, 1, 2, 3] and parse_levels("4,2,2") == [2, 4] and parse_levels("7") == [7]
    for bad in ("10", "a-b", "5-2", "", "-1", "1,,2"):
        with pytest.raises(ValueError, match="--noise-levels"):
            parse_levels(bad)


def test_sweep_rows_use_the_documented_seeds(run):
    model = wn.load(run / "run" / "nat.h5")
    from witnp.train.data import load_npz
    from witnp import _data
    d = load_npz(_data.path("digits"))
    rows = noise_sweep({"nat": model}, d.x_test, d.y_test, [0, 4], seeds=3)
    assert [(r["level"], r["seeds"]) for r in rows] == [(0, 1), (4, 3)]
    assert rows[0]["accuracy"][1] == 0.0
    noisy = wn.train.with_config(model, {"noise_level": 4})
    accs = [wn.train.evaluate(noisy, d.x_test, d.y_test, rng=wn.train.noise_eval_rng(s))["accuracy"] for s in range(3)]
    assert rows[1]["accuracy"] == [pytest.approx(np.mean(accs)), pytest.approx(np.std(accs))]
    with pytest.raises(ValueError, match="float model"):
        noise_sweep({"f": wn.load(run / "run" / "float.h5")}, d.x_test, d.y_test, [1])


def test_cli_sweep_of_three_models_writes_csv_json_and_plot(run, tmp_path):
    pytest.importorskip("matplotlib")
    paths = [str(run / "run" / f) for f in ("float.h5", "qat.h5", "nat.h5")]
    r = CliRunner().invoke(main, ["eval", *paths, "--quantize", "--noise-levels", "0-2", "--noise-seeds", "2",
                                  "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json"),
                                  "--plot", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [(x["model"], x["level"]) for x in rows] == [(m, lv) for m in ("float (PTQ)", "qat", "nat")
                                                        for lv in (0, 1, 2)]
    with open(tmp_path / "s.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 9 and float(table[3]["accuracy_mean"]) == pytest.approx(rows[3]["accuracy"][0])
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    r = CliRunner().invoke(main, ["eval", str(run / "run" / "nat.h5"), "--noise-levels", "0-1", "--plot",
                                  str(tmp_path / "p.png")])
    assert r.exit_code == 1 and 'pip install "witnp[plot]"' in r.output and not (tmp_path / "p.png").exists()


def test_quantize_evaluates_a_float_model_as_the_recipe_quantizes_it(run):
    r = CliRunner().invoke(main, ["eval", str(run / "run" / "float.h5"), "--quantize"])
    assert r.exit_code == 0, r.output
    table = json.loads((run / "run" / "eval.json").read_text())
    assert f"accuracy: {table['float']['quantized']['accuracy']:.4f}" in r.output  # the table's float row
    for args, match in [(["--quantize"], "already quantized"), (["--noise-level", "3"], None)]:
        r = CliRunner().invoke(main, ["eval", str(run / "run" / "qat.h5"), *args])
        assert (r.exit_code == 1 and match in r.output) if match else r.exit_code == 0
    r = CliRunner().invoke(main, ["eval", str(run / "run" / "qat.h5"), str(run / "run" / "nat.h5")])
    assert r.exit_code == 2 and "several MODELs go with --noise-levels" in r.output
    r = CliRunner().invoke(main, ["eval", str(run / "run" / "qat.h5"), "--csv", "x.csv"])
    assert r.exit_code == 2 and "--noise-levels" in r.output
