"""inspect --compare: per-layer figures of the quantized and noisy model against the float one."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.analysis.compare import _metrics, compare, units
from witnp.cli.main import main


def _cfg(**kw):
    base = dict(use_quantization=True, handle_neg_in="PN", use_auto_scale=False, scale_x=64, scale_weight=64,
                scale_y=64, noise_level=3)
    base.update(kw)
    return wn.LayerConfig(**base)


def _model(bad_scale_y):
    """Three Linear layers with fine scales; the middle one's outputs coarse (scale_y = bad_scale_y)."""
    rng = np.random.default_rng(0)
    layers = [wn.Linear(16, 16, config=_cfg(), rng=rng), wn.Linear(16, 16, config=_cfg(scale_y=bad_scale_y), rng=rng),
              wn.Linear(16, 4, config=_cfg(), rng=rng)]
    for lin in layers:
        lin.params["weight"] *= 0.5
    return wn.Sequential(*layers)


def test_metrics_by_hand():
    f = np.array([3.0, 4.0])
    m = _metrics(np.array([3.0, 3.0]), f)
    assert m["snr_db"] == pytest.approx(10 * math.log10(25 / 1)) and m["max_abs"] == 1.0 and m["mean_abs"] == 0.5
    assert m["cosine"] == pytest.approx(21 / (5 * math.sqrt(18)))
    assert _metrics(f, f)["snr_db"] == math.inf and _metrics(np.zeros(2), np.zeros(2))["cosine"] == 1.0


def test_a_layer_with_its_output_resolution_cut_is_ranked_first():
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32) * 0.5
    report = compare(_model(bad_scale_y=2), x, noise_seeds=2)
    assert [r["name"] for r in report] == ["0", "1", "2"]
    worst = min(report, key=lambda r: r["rank"])
    assert worst["name"] == "1" and worst["rank"] == 1
    assert worst["quantized"]["own_snr_db"] < report[0]["quantized"]["own_snr_db"] - 10
    # the error it makes stays in the cumulative SNR of the layers after it
    assert report[2]["quantized"]["snr_db"] < report[0]["quantized"]["snr_db"]
    for r in report:
        assert set(r["noisy"]) >= {"cosine", "snr_db"} and len(r["noisy"]["snr_db"]) == 2
        assert r["noisy"]["snr_db"][0] < r["quantized"]["snr_db"]  # noise adds error
    fine = compare(_model(bad_scale_y=64), x, noise_level=0)  # the same layer with its resolution back
    assert fine[1]["quantized"]["own_snr_db"] > worst["quantized"]["own_snr_db"] + 20
    assert fine[1]["noisy"] is None


def test_units_flatten_sequential_chains():
    m = wn.Sequential(wn.Sequential(wn.Linear(2, 2), wn.ReLU()), wn.Residual(wn.Linear(2, 2)))
    assert [n for n, _ in units(m)] == ["0.0", "0.1", "1"]


def test_float_model_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="no quantized layer"):
        compare(wn.Sequential(wn.Linear(2, 2)), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="noise_seeds=0"):
        compare(_model(64), np.zeros((1, 16), np.float32), noise_seeds=0)


def test_cli_compare_writes_one_json_record_per_layer(tmp_path):
    path = tmp_path / "m.h5"
    wn.save(_model(bad_scale_y=2), path)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 16)).astype(np.float32) * 0.5
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    r = CliRunner().invoke(main, ["inspect", str(path), "--compare", "--data", str(tmp_path / "d.npz"), "--json",
                                  str(tmp_path / "r.json"), "--noise-seeds", "2"])
    assert r.exit_code == 0, r.output
    assert "where accuracy goes" in r.output and "  1. 1 (Linear)" in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [x["name"] for x in rep] == ["0", "1", "2"] and all(x["type"] == "Linear" for x in rep)
    for rec in rep:
        for variant in ("quantized", "noisy"):
            assert {"cosine", "snr_db"} <= set(rec[variant])
    bad = CliRunner().invoke(main, ["inspect", str(path), "--compare", "--data", str(tmp_path / "d.npz"),
                                    "--json", str(path)])
    assert bad.exit_code == 1 and "MODEL itself" in bad.output
    bad = CliRunner().invoke(main, ["inspect", str(path), "--json", str(tmp_path / "x.json")])
    assert bad.exit_code == 2 and "--compare" in bad.output
