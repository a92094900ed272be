"""Calibration strategies for io_max: each against a hand-computed value, extrema unchanged, the powers of two
they end on, and the command line."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.analysis.calibration import io_max, parse_strategy
from witnp.cli.main import main
from witnp.quant import scale_from_max
from witnp.train.data import Dataset

# 999 values spread over [0, 1) and one outlier at 100: where the strategies part
VALUES = np.concatenate([np.arange(999) / 999.0, [100.0]]).astype(np.float32)


def test_each_strategy_by_hand():
    a = VALUES.astype(np.float64)
    assert io_max([VALUES], "extrema") == 100.0
    assert io_max([VALUES], "percentile", 99.0) == pytest.approx(np.percentile(a, 99.0))
    assert io_max([VALUES[:500], VALUES[500:]], "moving_average") == pytest.approx(0.9 * a[:500].max() + 0.1 * 100)
    # mse: the candidate io_max 100/2^k with the least squared error of |v| quantized at 8 bits
    errs = {}
    for k in range(7):
        s = scale_from_max(100.0 / 2 ** k, 8)
        errs[100.0 / 2 ** k] = np.sum((np.minimum(np.rint(a * s), 127) / s - a) ** 2)
    assert io_max([VALUES], "mse", bits=8) == min(errs, key=errs.get)  # here 100: clipping it costs most
    kl = io_max([VALUES], "kl")
    assert 0 < kl < 100.0  # the outlier is left to clip


def test_on_powers_of_two_the_strategies_choose_different_scales_only_with_outliers():
    scale = {s: scale_from_max(io_max([VALUES], *parse_strategy(s)), 8) for s in ("extrema", "percentile:99",
                                                                                  "percentile:99.9", "kl")}
    # p99 lies under 1 (scale 2^7), p99.9 interpolates into the outlier (1.097: one power up), extrema is 100
    assert (scale["extrema"], scale["percentile:99"], scale["percentile:99.9"]) == (1.0, 128.0, 64.0)
    assert scale["kl"] > 1.0
    tame = VALUES[:-1]  # no outlier: every strategy's io_max lies in the same power-of-two interval
    assert len({scale_from_max(io_max([tame], *parse_strategy(s)), 8) for s in ("extrema", "percentile:99.9",
                                                                                 "moving_average")}) == 1


def _two_linears(seed):
    """Linear(6, 5) -> ReLU -> Linear(5, 3), quantized PN with auto-scale, and x (64, 6) float32."""
    rng = np.random.default_rng(seed)
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", use_auto_scale=True, auto_scale_update_step=2)
    m = wn.Sequential(wn.Linear(6, 5, config=cfg, rng=rng), wn.ReLU(config=cfg), wn.Linear(5, 3, config=cfg, rng=rng))
    x = rng.normal(size=(64, 6)).astype(np.float32)
    return m, x


def test_extrema_is_todays_calibration_and_others_set_the_array_layers():
    m, x = _two_linears(0)
    a, b = wn.train.with_config(m, {}), wn.train.with_config(m, {})
    wn.train.calibrate(a, x)
    wn.train.calibrate(b, x, strategy="extrema")
    for (k1, v1), (k2, v2) in zip(a.named_stats(), b.named_stats(), strict=True):
        np.testing.assert_array_equal(v1, v2, err_msg=k1)
    c = wn.train.with_config(m, {})
    wn.train.calibrate(c, x, strategy="percentile", param=90.0)
    first = c.children["0"]
    assert float(first.stats["io_max_x"]) == pytest.approx(np.percentile(np.abs(x[:64]), 90.0), rel=1e-6)
    assert float(first.stats["io_max_weight"]) == pytest.approx(np.abs(first.params["weight"]).max())
    with pytest.raises(ValueError, match="strategy='median'"):
        wn.train.calibrate(c, x, strategy="median")


def test_a_layer_takes_its_own_strategy_and_the_others_keep_theirs():
    m, x = _two_linears(3)
    ref, one = wn.train.with_config(m, {}), wn.train.with_config(m, {})
    wn.train.calibrate(ref, x)
    wn.train.calibrate(one, x, per_layer={"2": "percentile:90"})
    for k in ref.children["0"].stats:  # the first layer keeps the running maximum, bit for bit
        np.testing.assert_array_equal(ref.children["0"].stats[k], one.children["0"].stats[k], err_msg=k)
    fm = wn.train.with_config(m, {"use_quantization": False, "noise_level": 0})
    h = fm.children["1"].forward(fm.children["0"].forward(x[:64], train=False)[0], train=False)[0]
    assert float(one.children["2"].stats["io_max_x"]) == pytest.approx(np.percentile(np.abs(h), 90), rel=1e-6)
    assert float(one.children["2"].stats["io_max_x"]) != float(ref.children["2"].stats["io_max_x"])
    # a global strategy with one layer kept at extrema: that layer is the reference's
    glob = wn.train.with_config(m, {})
    wn.train.calibrate(glob, x, strategy="percentile", param=90.0, per_layer={"0": "extrema"})
    np.testing.assert_array_equal(glob.children["0"].stats["io_max_x"], ref.children["0"].stats["io_max_x"])
    assert float(glob.children["2"].stats["io_max_x"]) == float(one.children["2"].stats["io_max_x"])
    for bad, match in [({"1": "kl"}, "layer '1': not a quantized Linear"), ({"9": "kl"}, "layer '9'"),
                       ({"0": "median"}, r"per_layer\['0'\]")]:
        with pytest.raises(ValueError, match=match):
            wn.train.calibrate(wn.train.with_config(m, {}), x, per_layer=bad)


def test_run_config_calibrates_per_layer(tmp_path):
    run = lambda out, *sets: CliRunner().invoke(main, ["train", "--out", str(tmp_path / out), "--set",
                                                       "stages=[{name='float',epochs=1,lr=0.01}]", *sets])
    a = run("a")
    b = run("b", "--set", "model.overrides.7.calibration='percentile:50'")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra = json.loads((tmp_path / "a" / "eval.json").read_text())
    rb = json.loads((tmp_path / "b" / "eval.json").read_text())
    # the same float weights, another io_max on the last Linear: the same float column, another quantized one
    assert ra["float"]["float"] == rb["float"]["float"] and ra["float"]["quantized"] != rb["float"]["quantized"]
    bad = run("c", "--set", "model.overrides.1.calibration='kl'")
    assert bad.exit_code == 1 and "layer 1 is a ReLU" in bad.output and not (tmp_path / "c").exists()


def test_parse_and_cli(tmp_path):
    assert parse_strategy("percentile") == ("percentile", 99.99) and parse_strategy("kl") == ("kl", None)
    for bad in ("median", "percentile:0", "percentile:x", "mse:3"):
        with pytest.raises(ValueError, match="calibration"):
            parse_strategy(bad)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "nope.h5"), "--calibration", "kl"])
    assert r.exit_code == 2
    wn.save(wn.Sequential(wn.Linear(4, 2)), tmp_path / "m.h5", data="digits")
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--calibration", "kl"])
    assert r.exit_code == 2 and "--calibration goes with --quantize" in r.output


def test_pinned_io_max_survives_epochs_and_training_forwards():
    m, x = _two_linears(5)
    first = m.children["0"]
    first.stats["io_max_x"] = np.array(0.75, np.float32)
    first.pin_io_max(("x", "y"))
    assert first.scales["x"] == scale_from_max(0.75, first._qs()["x"])  # the scale follows at once
    w_before = float(first.stats["io_max_weight"])
    m.begin_epoch()
    for i in range(3):
        m.forward(x[16 * i:16 * (i + 1)] * 10, train=True)  # inputs far above 0.75 are not recorded
    assert float(first.stats["io_max_x"]) == 0.75
    assert float(first.stats["io_max_weight"]) != w_before  # the weight keeps the vendor's schedule
    assert float(m.children["2"].stats["io_max_x"]) != 8.0  # an unpinned layer re-collects (8.0: the epoch's reset)
    with pytest.raises(ValueError, match="cannot pin io_max of \\['z'\\]"):
        first.pin_io_max(("z",))


def _recipe(m, x, calibration, per_layer=None):
    y = (x[:, 0] > 0).astype(np.int64)
    data = Dataset(x[:48], y[:48], x[48:], y[48:])
    stages = [wn.train.Stage("float", {"use_quantization": False}, 1, 0.01),
              wn.train.Stage("qat", {"use_quantization": True}, 2, 0.01)]
    logs = []
    model, rows, _ = wn.train.run_recipe(wn.train.with_config(m, {"use_quantization": False}), data, stages,
                                         noise_level=0, calibration=calibration, layer_calibration=per_layer,
                                         log=logs.append, batch_size=16)
    return model, logs, data


def test_a_quantized_stage_from_float_trains_with_the_strategy_io_max():
    m, x = _two_linears(7)
    ref, ref_logs, data = _recipe(m, x, "extrema")
    assert not any("kept from calibration" in s for s in ref_logs)
    got, logs, _ = _recipe(m, x, "extrema", {"2": "percentile:50"})
    assert any("qat: io_max of 2 kept from calibration" in s for s in logs)
    # the stage's start: the float model's weights calibrated under percentile:50 on the training split
    start = wn.train.run_recipe(wn.train.with_config(m, {"use_quantization": False}), data,
                                [wn.train.Stage("float", {"use_quantization": False}, 1, 0.01)], noise_level=0,
                                log=lambda s: None, batch_size=16)[0]
    start = wn.train.with_config(start, {"use_quantization": True})
    wn.train.calibrate(start, data.x_train, 16, per_layer={"2": "percentile:50"})
    expect = start.children["2"].stats
    for t in ("x", "y"):  # kept through two epochs of training, not the running maximum of their first forwards
        assert float(got.children["2"].stats["io_max_" + t]) == float(expect["io_max_" + t])
        assert float(got.children["2"].stats["io_max_" + t]) != float(ref.children["2"].stats["io_max_" + t])
    # the other layer follows the vendor's schedule as under extrema; the weights differ only through layer 2
    assert float(got.children["0"].stats["io_max_weight"]) > 0
