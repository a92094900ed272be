"""The shipped speech examples (examples/*.toml on data/*.npz) run float -> QAT -> NAT on a few epochs, export,
and the integer engine reproduces each bit for bit; the data files hold what data/README.md says."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp import _data
from witnp.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["--set", "stages.0.epochs=2", "--set", "stages.1.epochs=1", "--set", "stages.2.epochs=1",
         "--set", "noise_seeds=2", "--no-progress"]


@pytest.mark.parametrize("example,metric", [("kws_japanese_vowels", "accuracy"), ("denoise_arctic", "snr_db"),
                                            ("vad_arctic", "frame_accuracy")])
def test_example_trains_exports_and_the_engine_reproduces_it(tmp_path, example, metric):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--config", os.path.join(ROOT, "examples", f"{example}.toml"), "--out",
                                  str(out), *SHORT])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "eval.json").read_text())
    assert list(ev) == ["float", "qat", "nat"] and metric in ev["nat"]["quantized"]
    assert len(ev["nat"]["noisy"][metric]) == 2  # mean and std
    e = CliRunner().invoke(main, ["export", str(out / "best.h5"), "-o", str(tmp_path / "h.h5"), "--golden", "3"])
    assert e.exit_code == 0, e.output
    i = CliRunner().invoke(main, ["eval", str(out / "best.h5"), "--integer"])
    assert i.exit_code == 0 and "bit-identical to the quantized model: True" in i.output, i.output


def test_the_speech_data_files():
    jv = wn.train.data.load_npz(_data.path("japanese_vowels"))
    assert jv.x_train.shape == (270, 29, 12) and jv.x_test.shape == (370, 29, 12)
    assert np.bincount(jv.y_train).tolist() == [30] * 9 and jv.lengths_test.min() >= 7 and jv.lengths_test.max() <= 29
    for i in range(0, 270, 37):  # zero past each length: padding only
        assert not jv.x_train[i, jv.lengths_train[i]:].any() and jv.x_train[i, jv.lengths_train[i] - 1].any()
    dn = wn.train.data.load_npz(_data.path("arctic_denoise"))
    assert dn.x_train.shape[1:] == (25, 16) and dn.y_train.shape == dn.x_train.shape
    assert 0.0 <= dn.y_train.min() and dn.y_train.max() <= 1.0  # gains
    vad = wn.train.data.load_npz(_data.path("arctic_vad"))
    assert vad.y_train.shape == vad.x_train.shape[:2] and set(np.unique(vad.y_train)) == {0, 1}
