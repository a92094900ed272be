"""Firmware export and the integer engine: the engine equals the QAT model bit for bit for every array layer
type and mode and for a whole model; the handoff file, C header and gains JSON carry the same numbers."""
import json
import re

import h5py
import numpy as np
import pytest

import witnp as wn
from witnp.handoff.engine import IntegerEngine, shift_round
from witnp.handoff.export import (export_model, golden_vectors, leaf_records, read_handoff, write_c_header,
                                  write_gains_json, write_handoff)

pytestmark = pytest.mark.filterwarnings("ignore:.*io_max of:RuntimeWarning")


def trained(layers, x, seed=0):
    m = wn.Sequential(*layers)
    m.begin_epoch()
    m.forward(x, train=True, rng=np.random.default_rng(seed))  # auto-scale records io_max
    return m


def test_shift_round_is_half_to_even():
    v = np.array([5, 6, 7, -5, -6, -7, 12, -12, 3])
    np.testing.assert_array_equal(shift_round(v, -1), np.rint(v / 2))
    np.testing.assert_array_equal(shift_round(v, -3), np.rint(v / 8))
    np.testing.assert_array_equal(shift_round(v, 2), v * 4)


CASES = [(kind, neg, xb) for kind in ("Linear", "Conv2d", "to_linear", "ConvT") for neg in ("FALSE", "PN", "Shift")
         for xb in (8, 10) if not (kind == "ConvT" and neg == "Shift")]


@pytest.mark.parametrize("kind, neg, xb", CASES)
def test_engine_equals_the_model_per_layer(kind, neg, xb):
    rng = np.random.default_rng(CASES.index((kind, neg, xb)))  # the same draws every run (hash() is salted)
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=neg, x_quant_bits=xb, y_quant_bits=10,
                         bias_d=1.5, bias_row_N=2, shift_num=0.7)
    if kind == "Linear":
        layer, x = wn.Linear(12, 5, config=cfg), rng.normal(size=(6, 12)) * 2
    elif kind == "ConvT":
        layer, x = wn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, config=cfg), \
            rng.normal(size=(2, 3, 5, 4))
    else:
        layer = wn.Conv2d(3, 4, (2, 3), stride=2, padding=1, config=cfg.replace(to_linear=kind == "to_linear"))
        x = rng.normal(size=(2, 3, 7, 6))
    x = x.astype(np.float32)
    m = trained([layer], x)
    y_eng, codes = IntegerEngine(export_model(m)).run(x)
    np.testing.assert_array_equal(y_eng, m(x))
    assert codes["0"].dtype.kind == "i"


def digits_cnn(q):
    return [wn.Conv2d(1, 4, 3, padding=1, config=q), wn.ReLU(), wn.MaxPool2d(2),
            wn.Conv2d(4, 4, 3, padding=1, config=q.replace(handle_neg_in="FALSE")), wn.Tanh(config=q), wn.Flatten(),
            wn.Linear(64, 10, config=q), wn.Sigmoid(config=q)]


def test_engine_equals_a_whole_model_and_the_handoff_round_trips(tmp_path):
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16)
    x = np.random.default_rng(1).normal(size=(8, 1, 8, 8)).astype(np.float32)
    m = trained(digits_cnn(q), x)
    recs = export_model(m)
    gold = golden_vectors(m, recs, x[:3])
    np.testing.assert_array_equal(gold["engine_output"], gold["output"])
    path = tmp_path / "handoff.h5"
    write_handoff(path, recs, gold)
    with h5py.File(path, "r") as f:  # plain h5py reads it
        assert f.attrs["format"] == "witnp-firmware"
        w = f["layers/0/weight"][()]
        assert w.dtype == np.int8 and w.shape == (4, 1, 3, 3)
        b = f["layers/0/bias_npu"][()]
        assert b.dtype == np.int32 and np.all(b % 128 == 0)
        assert "shift_x" in f["layers/0"].attrs and "codes/6" in f["golden"]
    eng = IntegerEngine.from_file(path)
    np.testing.assert_array_equal(eng.run(x)[0], m(x))
    write_c_header(tmp_path / "w.h", recs)
    text = (tmp_path / "w.h").read_text()
    assert "static const int8_t layer_0_weight[" in text and "LAYER_6_SHIFT_Y" in text
    write_gains_json(tmp_path / "g.json", recs)
    gains = json.loads((tmp_path / "g.json").read_text())
    assert 2.0 ** gains["6"]["shift_y"] == gains["6"]["scale_y"]
    assert list(gains) == [n for n, _ in leaf_records(recs)]  # every layer, in order, with its whole record
    for name, rec in leaf_records(recs):
        for k, v in rec.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(np.asarray(gains[name][k]), v, err_msg=f"{name}.{k}")


def test_mapper_warnings_and_refusals():
    q = wn.LayerConfig(use_quantization=True, use_auto_scale=False, scale_x=16, scale_weight=256, scale_y=16,
                       bias_row_N=1)
    lin = wn.Linear(4, 900, config=q)
    lin.params["weight"][0, 0] = 5.0  # 5·256 > 127
    lin.params["bias"][0] = 50.0  # 50·16·256/128 > 127·N
    msgs = export_model(wn.Sequential(lin))[0][1]["warnings"]
    assert any("weights lie outside the int8 range" in m for m in msgs)
    assert any("exceed ±128·bias_row_N" in m for m in msgs)
    assert any("900 output columns exceed the array's 896" in m for m in msgs)
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\) is in float mode"):
        export_model(wn.Sequential(wn.Linear(2, 2)))
    with pytest.raises(ValueError, match=r"layer '0' \(AvgPool2d\) is in float mode"):
        export_model(wn.Sequential(wn.AvgPool2d(2)))
    with pytest.raises(ValueError, match=r"layer '0' \(BatchNorm2d\) is in float mode"):
        export_model(wn.Sequential(wn.BatchNorm2d(2)))
    with pytest.raises(wn.ModelFileError, match="not a witnp firmware export"):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            wn.save(wn.Linear(2, 2), d + "/m.h5")
            read_handoff(d + "/m.h5")


def test_engine_equals_models_with_branches_and_every_digital_op(tmp_path):
    """Residual (Add), Branches (Cat, Mul, Divide), per-channel PReLU and BatchNorm, Sqrt, Mean: the engine runs
    them on integer codes and equals the model bit for bit, also after a trip through the handoff file."""
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 2, 6, 6)).astype(np.float32)
    bn = wn.BatchNorm2d(4, config=q)
    layers = [
        wn.Conv2d(2, 4, 3, padding=1, config=q), bn, wn.PReLU(4, 0.2, config=q),
        wn.Residual(wn.Conv2d(4, 4, 3, padding=1, config=q), merge=wn.Add(config=q)),
        wn.Branches(wn.Conv2d(4, 2, 1, config=q), wn.Conv2d(4, 2, 1, config=q), merge=wn.Cat(dim=1, config=q)),
        wn.Branches(wn.Conv2d(4, 4, 1, config=q), wn.Conv2d(4, 4, 1, config=q), merge=wn.Mul(config=q)),
        wn.Branches(wn.Conv2d(4, 4, 1, config=q), wn.Sqrt(config=q), merge=wn.Divide(config=q)),
        wn.Mean(dim=(2, 3), config=q), wn.Linear(4, 3, config=q)]
    m = wn.Sequential(*layers)
    m.begin_epoch()
    for seed in range(3):
        m.forward(x, train=True, rng=np.random.default_rng(seed))
    recs = export_model(m)
    y_eng, codes = IntegerEngine(recs).run(x)
    np.testing.assert_array_equal(y_eng, m(x))
    path = tmp_path / "h.h5"
    write_handoff(path, recs, golden_vectors(m, recs, x[:2]))
    np.testing.assert_array_equal(IntegerEngine.from_file(path).run(x)[0], m(x))
    assert "3.merge" in codes and "6.1" in codes


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (4, 2, 1), ((1, 2), (1, 2), 0)])
def test_avgpool_with_a_power_of_two_window_exports_and_the_engine_runs_it(tmp_path, k, stride, pad):
    """A window sum and a rounding shift on codes: trained with auto-scale, exported, through the handoff file,
    equal to the model bit for bit (round half to even on exact .5 sums included)."""
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                       auto_scale_update_step=2)
    rng = np.random.default_rng(8)
    m = wn.Sequential(wn.Conv2d(2, 4, 3, padding=1, config=q), wn.AvgPool2d(k, stride, pad, config=q),
                      wn.Mean(dim=(2, 3), config=q), wn.Linear(4, 3, config=q))
    x = rng.normal(size=(5, 2, 6, 6)).astype(np.float32)
    m.begin_epoch()
    for seed in range(3):
        y, ctx = m.forward(x, train=True, rng=np.random.default_rng(seed))
        m.backward(np.ones_like(y), ctx)  # the straight-through backward runs
    recs = export_model(m)
    np.testing.assert_array_equal(IntegerEngine(recs).run(x)[0], m(x))
    write_handoff(tmp_path / "h.h5", recs, golden_vectors(m, recs, x[:2]))
    np.testing.assert_array_equal(IntegerEngine.from_file(tmp_path / "h.h5").run(x)[0], m(x))
    pooled = m.children["1"](m.children["0"](x)) * recs[1][1]["scale_x"]
    assert np.array_equal(pooled, np.rint(pooled))  # on the code grid: what the chip's shift gives


def test_quantized_avgpool_needs_a_power_of_two_window():
    q = wn.LayerConfig(use_quantization=True)
    with pytest.raises(ValueError, match="averages 9 values; quantized, the window kh·kw must be a power of two"):
        wn.AvgPool2d(3, config=q)
    m = wn.Sequential(wn.AvgPool2d(3))  # float: any window
    with pytest.raises(ValueError, match="averages 9 values"):
        wn.train.with_config(m, {"use_quantization": True})


def test_engine_runs_a_quantized_gru_model(tmp_path):
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=64, scale_weight=64, scale_y=16,
                       auto_scale_update_step=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 7, 3)).astype(np.float32)
    m = wn.Sequential(wn.GRU(3, 6, config=q, rng=rng), wn.Mean(dim=1, config=q), wn.Linear(6, 4, config=q))
    m.begin_epoch()
    m.forward(x, train=True)
    recs = export_model(m)
    y_eng, codes = IntegerEngine(recs).run(x)
    np.testing.assert_array_equal(y_eng, m(x))
    assert codes["0"].shape == (5, 7, 6)
    write_handoff(tmp_path / "g.h5", recs)
    np.testing.assert_array_equal(IntegerEngine.from_file(tmp_path / "g.h5").run(x)[0], m(x))


@pytest.mark.parametrize("neg", ["PN", "FALSE"])
def test_gru_last_state_model_on_the_integer_engine(neg, tmp_path):
    """A keyword-spotter shape: GRU(return_sequences=False) then Linear; the engine equals the model bit for bit
    (also through a handoff file)."""
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=neg, use_auto_scale=True)
    rng = np.random.default_rng(3)
    model = wn.Sequential(wn.GRU(4, 6, config=cfg, rng=rng, return_sequences=False), wn.Linear(6, 3, config=cfg))
    x = rng.normal(size=(5, 7, 4)).astype(np.float32)
    if neg == "FALSE":
        x = np.abs(x)
    model.forward(x, train=True)  # auto-scale records io_max
    records = export_model(model)
    y_eng, _ = IntegerEngine(records).run(x)
    np.testing.assert_array_equal(y_eng, model.forward(x, train=False)[0])
    write_handoff(tmp_path / "h.h5", records)
    np.testing.assert_array_equal(IntegerEngine.from_file(tmp_path / "h.h5").run(x)[0], y_eng)


@pytest.mark.parametrize("neg", ["PN", "FALSE", "Shift"])
def test_conv1d_model_on_the_integer_engine(neg):
    """A TC-ResNet-style front end: Conv1d over (B, C, T), then Linear; the engine equals the model bit for bit."""
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=neg, use_auto_scale=True)
    rng = np.random.default_rng(4)
    model = wn.Sequential(wn.Conv1d(5, 8, 3, stride=2, padding=1, config=cfg, rng=rng), wn.ReLU(config=cfg),
                          wn.Flatten(), wn.Linear(8 * 6, 3, config=cfg, rng=rng))
    x = rng.normal(size=(4, 5, 12)).astype(np.float32)
    model.forward(x, train=True)
    records = export_model(model)
    assert records[0][1]["conv1d"] and records[0][1]["type"] == "Conv2d"
    np.testing.assert_array_equal(IntegerEngine(records).run(x)[0], model.forward(x, train=False)[0])


@pytest.mark.parametrize("rounding", ["round", "floor"])
@pytest.mark.parametrize("neg", ["PN", "FALSE"])
def test_streaming_step_equals_the_whole_sequence(neg, rounding):
    """IntegerEngine.step, one frame at a time with the GRUs' states carried by the caller, gives run()'s outputs
    and the model's bit for bit (two stacked GRUs, a Linear and a LUT op per frame); the state it returns is
    each GRU's last Q7 codes."""
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in=neg, use_auto_scale=True, rounding=rounding)
    rng = np.random.default_rng(5)
    model = wn.Sequential(wn.GRU(4, 6, config=cfg, rng=rng), wn.GRU(6, 5, config=cfg, rng=rng),
                          wn.Linear(5, 3, config=cfg, rng=rng), wn.Sigmoid(config=cfg))
    x = rng.normal(size=(3, 8, 4)).astype(np.float32)
    if neg == "FALSE":
        x = np.abs(x)
    model.forward(x, train=True)
    model = wn.train.with_config(model, {"noise_level": 0})
    eng = IntegerEngine(export_model(model))
    y, codes = eng.run(x)
    state, frames = None, []
    for t in range(x.shape[1]):
        yt, state = eng.step(x[:, t], state)
        frames.append(yt)
    np.testing.assert_array_equal(np.stack(frames, 1), y)
    np.testing.assert_array_equal(y, model.forward(x, train=False)[0])
    assert set(state) == {"0", "1"} and state["1"].shape == (3, 5)
    np.testing.assert_array_equal(state["0"], codes["0"][:, -1])
    with pytest.raises(ValueError, match="state of '0' has shape"):
        eng.step(x[:, 0], {"0": np.zeros((2, 6), np.int64)})


def test_streaming_refuses_layers_that_read_across_time():
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", use_auto_scale=True)
    rng = np.random.default_rng(6)
    for model, bad in [(wn.Sequential(wn.GRU(4, 6, config=cfg, rng=rng, return_sequences=False),
                                      wn.Linear(6, 2, config=cfg)), "'0' (GRU)"),
                       (wn.Sequential(wn.GRU(4, 6, config=cfg, rng=rng), wn.Mean(dim=1, config=cfg)), "'1' (Mean)")]:
        model.forward(rng.normal(size=(2, 5, 4)).astype(np.float32), train=True)
        with pytest.raises(ValueError, match=re.escape(f"step: layer {bad}")):
            IntegerEngine(export_model(model)).step(np.zeros((2, 4), np.float32))


def test_golden_vectors_hold_each_layers_input_codes_and_the_gru_states(tmp_path):
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=64, scale_weight=64, scale_y=16,
                       auto_scale_update_step=1)
    rng = np.random.default_rng(11)
    m = wn.Sequential(wn.GRU(3, 5, config=q, rng=rng, return_sequences=False), wn.Linear(5, 2, config=q, rng=rng))
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    m.begin_epoch()
    m.forward(x, train=True)
    recs = export_model(m)
    gold = golden_vectors(m, recs, x)
    g0, l1 = recs[0][1], recs[1][1]
    np.testing.assert_array_equal(gold["inputs/0"], np.rint(x * np.float32(g0["zr_scale_x"])))  # R(x·sx)
    np.testing.assert_array_equal(gold["inputs_in/0"], np.rint(x * np.float32(g0["in_scale_x"])))
    assert gold["states/0"].shape == (4, 6, 5) and gold["states/0"].dtype == np.int8
    np.testing.assert_array_equal(gold["states/0"][:, -1], gold["codes/0"])  # the last state is the GRU's output
    k = int(np.log2(l1["scale_x"])) - 7  # the Linear takes the Q7 state at its own input scale
    want = gold["codes/0"].astype(np.int64) << k if k >= 0 else shift_round(gold["codes/0"], k)
    np.testing.assert_array_equal(gold["inputs/1"], want)
    write_handoff(tmp_path / "h.h5", recs, gold)
    import h5py
    with h5py.File(tmp_path / "h.h5") as f:
        assert {"inputs", "inputs_in", "states", "codes"} <= set(f["golden"])


def test_the_mapper_calibration_pair(tmp_path):
    from click.testing import CliRunner

    from witnp.cli.main import main
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16)
    m = wn.Sequential(wn.Flatten(), wn.Linear(64, 10, config=q, rng=np.random.default_rng(2)))
    wn.save(m, tmp_path / "m.h5", data="digits")
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "h.h5"), "--golden", "5",
                                  "--mapper-pair", str(tmp_path / "pair")])
    assert r.exit_code == 0, r.output
    import json
    desc = json.loads((tmp_path / "pair" / "expected.json").read_text())
    xin = np.fromfile(tmp_path / "pair" / "expected_in.bin", "<i2").reshape([5] + desc["in_shape"])
    yout = np.fromfile(tmp_path / "pair" / "expected_out.bin", "<i2").reshape([5] + desc["out_shape"])
    d = wn.train.data.load_npz(wn._data.path("digits"))
    np.testing.assert_array_equal(xin, np.rint(d.x_test[:5].reshape(5, -1) * np.float32(desc["in_scale"])))
    np.testing.assert_array_equal(yout / np.float32(desc["out_scale"]), m(d.x_test[:5]))
    bad = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "h2.h5"), "--golden", "0",
                                    "--mapper-pair", str(tmp_path / "p2")])
    assert bad.exit_code == 2 and "--golden N" in bad.output and not (tmp_path / "p2").exists()
