"""The C reference (`export --c-source`): compiled with the system C compiler (-std=c99 -pedantic -Wall -Wextra
-Werror) and run on frames, its output codes equal the integer engine's (and so the QAT model's) bit for bit,
for every layer type it runs, whole models, streaming GRUs, and the shipped examples."""
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.handoff.c_source import c_source
from witnp.handoff.engine import IntegerEngine
from witnp.handoff.export import export_model

from .models import branching_model

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine (cc/gcc): the C reference is "
                                                   "tested where one exists")
MAIN = r"""
#include <stdio.h>
#include <stdint.h>
#include "model.c"
int main(int argc, char **argv) {
    static float x[WITNP_INPUT_SIZE]; static int32_t y[WITNP_OUTPUT_SIZE];
    (void)argv;
#ifdef WITNP_FRAME_SIZE
    if (argc > 1) { /* streaming: frames of every sequence in turn, the state reset per sequence */
        static witnp_state st; static int32_t yf[WITNP_FRAME_OUTPUT_SIZE];
        int t, T = WITNP_INPUT_SIZE / WITNP_FRAME_SIZE;
        while (fread(x, sizeof(float), WITNP_INPUT_SIZE, stdin) == WITNP_INPUT_SIZE) {
            witnp_state_init(&st);
            for (t = 0; t < T; t++) {
                witnp_step(x + t * WITNP_FRAME_SIZE, &st, yf);
                fwrite(yf, sizeof(int32_t), WITNP_FRAME_OUTPUT_SIZE, stdout);
            }
        }
        return 0;
    }
#else
    (void)argc;
#endif
    while (fread(x, sizeof(float), WITNP_INPUT_SIZE, stdin) == WITNP_INPUT_SIZE) {
        witnp_forward(x, y);
        fwrite(y, sizeof(int32_t), WITNP_OUTPUT_SIZE, stdout);
    }
    return 0;
}
"""


def build(tmp_path, src):
    (tmp_path / "model.c").write_text(src)
    (tmp_path / "main.c").write_text(MAIN)
    r = subprocess.run([CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-o", str(tmp_path / "m"),
                        str(tmp_path / "main.c"), "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:4000]
    return tmp_path / "m"


def run(exe, x, *args):
    out = subprocess.run([str(exe), *args], input=np.ascontiguousarray(x, np.float32).tobytes(), capture_output=True)
    assert out.returncode == 0
    return np.frombuffer(out.stdout, np.int32)


def check(tmp_path, model, x, train_steps=3):
    """Trains auto-scale a little, exports, compiles the C reference and compares it with the engine."""
    model.begin_epoch()
    for s in range(train_steps):
        model.forward(x, train=True, rng=np.random.default_rng(s))
    recs = export_model(model)
    src = c_source(recs, x.shape[1:])
    exe = build(tmp_path, src)
    y_eng = IntegerEngine(recs).run(x)[0]
    np.testing.assert_array_equal(y_eng, model(x))  # the engine is the model
    scale = float(src.split("#define WITNP_OUTPUT_SCALE ")[1].split("f")[0])
    codes = run(exe, x).reshape(y_eng.shape)
    np.testing.assert_array_equal(codes.astype(np.float32) / np.float32(scale), y_eng)
    return recs, exe


def Q(**kw):
    base = dict(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                auto_scale_update_step=2)
    return wn.LayerConfig(**{**base, **kw})


@pytest.mark.parametrize("rounding", ["round", "floor"])
@pytest.mark.parametrize("neg", ["FALSE", "PN", "Shift"])
@pytest.mark.parametrize("xb", [8, 10])
def test_linear(tmp_path, neg, xb, rounding):
    rng = np.random.default_rng(1)
    m = wn.Sequential(wn.Linear(7, 5, config=Q(handle_neg_in=neg, x_quant_bits=xb, shift_num=0.5, rounding=rounding),
                                rng=rng),
                      wn.ReLU(), wn.Linear(5, 3, config=Q(handle_neg_in=neg, x_quant_bits=xb), rng=rng))
    check(tmp_path, m, rng.normal(size=(9, 7)).astype(np.float32) * 2)


@pytest.mark.parametrize("neg", ["FALSE", "PN", "Shift"])
@pytest.mark.parametrize("geo", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, dilation=2, padding=2),
                                 dict(kernel_size=3, padding=1, groups=2), dict(kernel_size=2, to_linear=True)])
def test_conv2d(tmp_path, neg, geo):
    geo = dict(geo)
    to_linear = geo.pop("to_linear", False)
    rng = np.random.default_rng(2)
    q = Q(handle_neg_in=neg, to_linear=to_linear, x_quant_bits=10 if to_linear else 8)
    m = wn.Sequential(wn.Conv2d(2, 4, config=q, rng=rng, **geo), wn.MaxPool2d(2, padding=1),
                      wn.Flatten(), wn.Mean(dim=1, config=Q()))
    check(tmp_path, m, rng.normal(size=(3, 2, 7, 7)).astype(np.float32))


@pytest.mark.parametrize("rounding", ["round", "floor"])
@pytest.mark.parametrize("neg", ["FALSE", "PN"])
def test_conv_transpose_conv1d_and_avgpool(tmp_path, neg, rounding):
    rng = np.random.default_rng(3)
    m = wn.Sequential(wn.ConvTranspose2d(2, 4, 4, stride=2, padding=1, output_padding=1,
                                         config=Q(handle_neg_in=neg, rounding=rounding),
                                         rng=rng), wn.AvgPool2d(2, config=Q()), wn.ReLU(),
                      wn.Conv2d(4, 2, 3, padding=1, groups=2, config=Q(handle_neg_in=neg), rng=rng))
    check(tmp_path, m, rng.normal(size=(3, 2, 5, 5)).astype(np.float32))
    c1 = wn.Sequential(wn.Conv1d(3, 4, 3, padding=1, config=Q(handle_neg_in=neg), rng=rng), wn.ReLU(),
                       wn.Mean(dim=2, config=Q()), wn.Linear(4, 2, config=Q(), rng=rng))
    check(tmp_path, c1, rng.normal(size=(4, 3, 9)).astype(np.float32))


def test_table_ops(tmp_path):
    rng = np.random.default_rng(4)
    m = wn.Sequential(wn.Conv2d(1, 3, 3, padding=1, config=Q(), rng=rng), wn.BatchNorm2d(3, config=Q()),
                      wn.PReLU(3, 0.1, config=Q()), wn.Sigmoid(config=Q()), wn.Tanh(config=Q()),
                      wn.GELU(config=Q()), wn.Sqrt(config=Q()), wn.Flatten(), wn.Linear(3 * 16, 4, config=Q(), rng=rng))
    check(tmp_path, m, rng.normal(size=(5, 1, 4, 4)).astype(np.float32))


@pytest.mark.parametrize("neg", ["FALSE", "PN"])
def test_gru_whole_sequence_and_streaming(tmp_path, neg):
    rng = np.random.default_rng(5)
    q = Q(handle_neg_in=neg, scale_x=64, scale_weight=64, y_quant_bits=10)
    m = wn.Sequential(wn.GRU(4, 6, config=q, rng=rng), wn.GRU(6, 5, config=Q(handle_neg_in=neg), rng=rng),
                      wn.Linear(5, 3, config=Q(handle_neg_in=neg), rng=rng), wn.Sigmoid(config=Q()))
    x = rng.normal(size=(3, 7, 4)).astype(np.float32)
    recs, exe = check(tmp_path, m, x)
    eng = IntegerEngine(recs)
    frames = []
    for n in range(len(x)):  # the engine's step, frame by frame, one sequence at a time
        state = None
        for t in range(x.shape[1]):
            y, state = eng.step(x[n:n + 1, t], state)
            frames.append(y[0])
    want = np.stack(frames)
    scale = want.dtype.type(1)  # the step output is float; compare codes via the forward's scale
    got = run(exe, x, "step").reshape(want.shape).astype(np.float32)
    src = (tmp_path / "model.c").read_text()
    s = np.float32(float(src.split("#define WITNP_OUTPUT_SCALE ")[1].split("f")[0]))
    np.testing.assert_array_equal(got / s, want * scale)
    last = wn.Sequential(wn.GRU(4, 6, config=q, rng=rng, return_sequences=False), wn.Linear(6, 2, config=Q(), rng=rng))
    check(tmp_path, last, x)
    assert "witnp_step" not in (tmp_path / "model.c").read_text()  # the last state does not stream


def test_residual_branches_and_every_merge(tmp_path):
    check(tmp_path, branching_model(Q()), np.random.default_rng(5).normal(size=(6, 2, 6, 6)).astype(np.float32))
    first = wn.Sequential(wn.Residual(wn.Linear(3, 3, config=Q()), merge=wn.Add(config=Q())), wn.Linear(3, 2, config=Q()))
    check(tmp_path, first, np.random.default_rng(6).normal(size=(5, 3)).astype(np.float32))  # a merge of the input


def test_what_it_cannot_run_is_refused_by_name():
    with pytest.raises(ValueError, match="acts on the float network input"):
        c_source(export_model(wn.Sequential(wn.ReLU(), wn.Linear(3, 2, config=Q()))), (3,))


def test_export_c_source_on_the_speech_example(tmp_path, vad_run):
    out = vad_run
    e = CliRunner().invoke(main, ["export", str(out / "best.h5"), "-o", str(tmp_path / "h.h5"), "--c-source",
                                  str(tmp_path / "model.c")])
    assert e.exit_code == 0 and "wrote" in e.output, e.output
    src = (tmp_path / "model.c").read_text()
    exe = build(tmp_path, src)
    d = wn.train.data.load_npz(wn._data.path("arctic_vad"))
    x = d.x_test[:6]
    recs = export_model(wn.train.with_config(wn.load(out / "best.h5"), {"noise_level": 0}))
    y = IntegerEngine(recs).run(x)[0]
    s = np.float32(float(src.split("#define WITNP_OUTPUT_SCALE ")[1].split("f")[0]))
    np.testing.assert_array_equal(run(exe, x).reshape(y.shape).astype(np.float32) / s, y)
