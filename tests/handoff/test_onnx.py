"""The ONNX export (`export --onnx`): run by onnxruntime, the graph's output equals the QAT model's inference
output bit for bit, for every layer type the engine runs, whole models with branches, GRUs whole-sequence and
one frame at a time (the .step.onnx graph against IntegerEngine.step), and the shipped examples."""
import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.handoff.engine import IntegerEngine
from witnp.handoff.export import export_model

from .models import branching_model

ort = pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install "witnp[onnx]"')
from witnp.handoff.onnx_export import onnx_model  # noqa: E402


def Q(**kw):
    base = dict(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                auto_scale_update_step=2)
    return wn.LayerConfig(**{**base, **kw})


def session(model_proto):
    return ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def check(m, x):
    m.begin_epoch()
    for s in range(3):
        m.forward(x, train=True, rng=np.random.default_rng(s))
    recs = export_model(m)
    y = session(onnx_model(recs, x.shape[1:])).run(["y"], {"x": x})[0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, m(x))
    return recs


@pytest.mark.parametrize("rounding", ["round", "floor"])
@pytest.mark.parametrize("neg", ["FALSE", "PN", "Shift"])
@pytest.mark.parametrize("xb", [8, 10])
def test_linear(neg, xb, rounding):
    rng = np.random.default_rng(1)
    m = wn.Sequential(wn.Linear(7, 5, config=Q(handle_neg_in=neg, x_quant_bits=xb, shift_num=0.5, rounding=rounding),
                                rng=rng),
                      wn.ReLU(), wn.Linear(5, 3, config=Q(handle_neg_in=neg, x_quant_bits=xb), rng=rng))
    check(m, rng.normal(size=(9, 7)).astype(np.float32) * 2)


@pytest.mark.parametrize("neg", ["FALSE", "PN", "Shift"])
@pytest.mark.parametrize("geo", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, dilation=2, padding=2),
                                 dict(kernel_size=3, padding=1, groups=2), dict(kernel_size=2, to_linear=True)])
def test_conv2d(neg, geo):
    geo = dict(geo)
    to_linear = geo.pop("to_linear", False)
    rng = np.random.default_rng(2)
    q = Q(handle_neg_in=neg, to_linear=to_linear, x_quant_bits=10 if to_linear else 8)
    m = wn.Sequential(wn.Conv2d(2, 4, config=q, rng=rng, **geo), wn.MaxPool2d(2, padding=1), wn.Flatten(),
                      wn.Mean(dim=1, config=Q()))
    check(m, rng.normal(size=(3, 2, 7, 7)).astype(np.float32))


@pytest.mark.parametrize("rounding", ["round", "floor"])
@pytest.mark.parametrize("neg", ["FALSE", "PN"])
def test_conv_transpose_conv1d_avgpool_and_tables(neg, rounding):
    rng = np.random.default_rng(3)
    m = wn.Sequential(wn.ConvTranspose2d(2, 4, 4, stride=2, padding=1, output_padding=1,
                                         config=Q(handle_neg_in=neg, rounding=rounding),
                                         rng=rng), wn.AvgPool2d(2, config=Q()), wn.ReLU(),
                      wn.Conv2d(4, 3, 3, padding=1, config=Q(handle_neg_in=neg), rng=rng), wn.BatchNorm2d(3, config=Q()),
                      wn.PReLU(3, 0.1, config=Q()), wn.Sigmoid(config=Q()), wn.Tanh(config=Q()), wn.GELU(config=Q()),
                      wn.Sqrt(config=Q()))
    check(m, rng.normal(size=(3, 2, 5, 5)).astype(np.float32))
    c1 = wn.Sequential(wn.Conv1d(3, 4, 3, padding=1, config=Q(handle_neg_in=neg), rng=rng), wn.ReLU(),
                       wn.Mean(dim=2, config=Q()), wn.Linear(4, 2, config=Q(), rng=rng))
    check(c1, rng.normal(size=(4, 3, 9)).astype(np.float32))


def test_residual_branches_and_every_merge():
    check(branching_model(Q()), np.random.default_rng(5).normal(size=(6, 2, 6, 6)).astype(np.float32))


@pytest.mark.parametrize("neg", ["FALSE", "PN"])
def test_gru_whole_sequence_and_one_frame_at_a_time(neg):
    rng = np.random.default_rng(6)
    qg = Q(handle_neg_in=neg, scale_x=64, scale_weight=64, y_quant_bits=10)
    m = wn.Sequential(wn.GRU(4, 6, config=qg, rng=rng), wn.GRU(6, 5, config=Q(handle_neg_in=neg), rng=rng),
                      wn.Linear(5, 3, config=Q(handle_neg_in=neg), rng=rng), wn.Sigmoid(config=Q()))
    x = rng.normal(size=(3, 7, 4)).astype(np.float32)
    recs = check(m, x)
    step = onnx_model(recs, (4,), stream=True)
    sess = session(step)
    names = [i.name for i in step.graph.input][1:]
    hs = {n: np.zeros((3, i.type.tensor_type.shape.dim[1].dim_value)) for n, i in zip(names, list(step.graph.input)[1:])}
    assert len(names) == 2  # one state per GRU
    eng, state = IntegerEngine(recs), None
    for t in range(x.shape[1]):
        outs = sess.run(None, {"x": x[:, t], **hs})
        y, state = eng.step(x[:, t], state)
        np.testing.assert_array_equal(outs[0], y)
        for got, layer in zip(outs[1:], ("0", "1")):  # the states out: the engine's, GRU by GRU
            np.testing.assert_array_equal(got, state[layer].astype(np.float64))
        hs = dict(zip(names, outs[1:]))
    last = wn.Sequential(wn.GRU(4, 6, config=qg, rng=rng, return_sequences=False), wn.Linear(6, 2, config=Q(), rng=rng))
    check(last, x)


def test_export_onnx_writes_the_step_graph_for_the_speech_example(tmp_path, vad_run):
    out = vad_run
    e = CliRunner().invoke(main, ["export", str(out / "best.h5"), "-o", str(tmp_path / "h.h5"), "--onnx",
                                  str(tmp_path / "vad.onnx")])
    assert e.exit_code == 0, e.output
    assert (tmp_path / "vad.step.onnx").exists() and "vad.step.onnx" in e.output
    model = wn.load(out / "best.h5")
    x = wn.train.data.load_npz(wn._data.path("arctic_vad")).x_test[:5]
    sess = ort.InferenceSession(str(tmp_path / "vad.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(["y"], {"x": x})[0], wn.train.with_config(model, {"noise_level": 0})(x))


def test_without_the_extra_the_export_says_which(monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real(name, *a, **k)
    m = wn.Sequential(wn.Linear(4, 2, config=Q()))
    wn.save(m, tmp_path / "m.h5", data="digits")
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    r = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "h.h5"), "--golden", "0",
                                  "--onnx", str(tmp_path / "m.onnx")])
    assert r.exit_code == 1 and 'pip install "witnp[onnx]"' in r.output and not (tmp_path / "h.h5").exists()
