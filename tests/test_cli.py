"""The witnp command line through click's CliRunner: every command's happy and failing paths."""
import json
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main

FAST = ["--set", "stages.0.epochs=1", "--set", "stages.1.epochs=1", "--set", "stages.2.epochs=1",
        "--set", "noise_seeds=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = CliRunner().invoke(main, ["train", "--out", str(out), "--no-progress"] + FAST)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_train_default_writes_a_run_folder(run_dir):
    out, text = run_dir
    for f in ("config.json", "best.h5", "last.h5", "float.h5", "qat.h5", "nat.h5", "metrics.csv", "metrics.jsonl",
              "eval.txt", "eval.json"):
        assert (out / f).exists(), f
    assert "noise L4 (2 seeds)" in text and text.count("epoch 1/1") == 3
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stages"][0]["epochs"] == 1 and cfg["data"] == "digits"
    assert wn.load(out / "best.h5").children["7"].config.noise_level == 4


def test_eval_export_inspect(run_dir, tmp_path):
    out, _ = run_dir
    r = CliRunner().invoke(main, ["eval", str(out / "best.h5"), "--integer"])
    assert r.exit_code == 0, r.output
    assert "accuracy:" in r.output and "± " in r.output and "bit-identical to the quantized model: True" in r.output
    r = CliRunner().invoke(main, ["eval", str(out / "best.h5"), "--noise-level", "0"])
    assert r.exit_code == 0 and "±" not in r.output
    h = tmp_path / "handoff.h5"
    r = CliRunner().invoke(main, ["export", str(out / "best.h5"), "-o", str(h), "--golden", "4", "--c-header",
                                  str(tmp_path / "w.h"), "--json", str(tmp_path / "g.json")])
    assert r.exit_code == 0, r.output
    assert "4 golden frames" in r.output and (tmp_path / "w.h").exists()
    with h5py.File(h, "r") as f:
        np.testing.assert_array_equal(f["golden/engine_output"][()], f["golden/output"][()])
    r = CliRunner().invoke(main, ["inspect", str(out / "best.h5"), "--data", "digits"])
    assert r.exit_code == 0, r.output
    assert "Conv2d" in r.output and "io_max" in r.output and "saturated:" in r.output and "G " in r.output
    r = CliRunner().invoke(main, ["inspect", str(h)])
    assert r.exit_code == 0 and "array" in r.output


def _fails(args, match, tmp_path=None):
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    assert match in r.output, r.output
    return r


def test_user_errors_are_one_clear_line(tmp_path):
    _fails(["train", "--config", str(tmp_path / "nope.toml")], "no such file")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    _fails(["train", "--config", str(bad)], "invalid TOML")
    _fails(["train", "--set", "model.layers=[{type='Conv3d'}]"], "unknown layer type 'Conv3d'")
    _fails(["train", "--set", "model.layers=[{type='Linear', in_features=5, out_features=10}]"],
           "the model does not fit the data")
    _fails(["train", "--set", "quant.x_quant_bits=20"], "x_quant_bits=20 is not allowed")
    _fails(["train", "--set", "bogus=1"], "run config: unknown key 'bogus'")
    _fails(["train", "--set", "data=missing.npz"], "no such dataset file")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    _fails(["eval", str(corrupt)], "not a readable HDF5 file")
    _fails(["inspect", str(corrupt)], "not a readable HDF5 file")
    _fails(["eval", str(tmp_path / "none.h5")], "does not exist")
    m = tmp_path / "float.h5"
    wn.save(wn.Sequential(wn.Flatten(), wn.Linear(64, 10)), m)
    _fails(["export", str(m), "-o", str(tmp_path / "h.h5")], "is in float mode")


def test_debug_shows_the_traceback(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"junk")
    r = CliRunner().invoke(main, ["--debug", "eval", str(corrupt)])
    assert r.exit_code != 0 and isinstance(r.exception, wn.ModelFileError)


def test_help_lists_the_commands():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for cmd in ("train", "eval", "export", "inspect"):
        assert cmd in r.output


def test_the_gru_example_trains_exports_and_runs_on_integers(tmp_path):
    ex = os.path.join(os.path.dirname(__file__), "..", "examples", "gru_digits_rows.toml")
    out = tmp_path / "gru"
    r = CliRunner().invoke(main, ["train", "--config", ex, "--out", str(out), "--no-progress"] + FAST)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(out / "best.h5"), "-o", str(tmp_path / "h.h5"), "--data",
                                  "digits_rows", "--golden", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["eval", str(out / "best.h5"), "--data", "digits_rows", "--integer"])
    assert r.exit_code == 0 and "bit-identical to the quantized model: True" in r.output, r.output


@pytest.mark.parametrize("env, calls", [({}, 1), ({"WITNP_KEEP_FREED_MEMORY": "0"}, 0)])
def test_cli_keeps_freed_memory_unless_told_not_to(monkeypatch, env, calls):
    seen = []
    monkeypatch.setattr(wn, "keep_freed_memory", lambda *a, **k: seen.append(a) or True)
    monkeypatch.delenv("WITNP_KEEP_FREED_MEMORY", raising=False)
    res = CliRunner().invoke(main, ["inspect", "--help"], env=env)
    assert res.exit_code == 0, res.output
    assert len(seen) == calls


def test_inspect_counts_clipped_weights_with_the_arrays_rule(tmp_path):
    """W·sw = 127.3 is clipped to 127 on the array (the kernel's mask); the old 127.5 threshold said not."""
    cfg = wn.LayerConfig(use_quantization=True, scale_x=16, scale_weight=16, scale_y=16, use_auto_scale=False)
    lin = wn.Linear(4, 1, config=cfg)
    lin.params["weight"][...] = np.array([[127.3 / 16, 1.0, -1.0, 200.0 / 16]], np.float32)
    wn.save(wn.Sequential(lin), tmp_path / "m.h5")
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.h5")])
    assert r.exit_code == 0, r.output
    assert "weights clipped 50.00%" in r.output


def test_inspect_saturation_counts_clipped_values_not_zeros(tmp_path):
    """A PN layer's straight-through mask is 0 at x = 0 too; only values past the code range count. Inputs:
    per row two zeros, one value past 255/16 and one inside, so 25 % of the inputs clip."""
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                         use_auto_scale=False)
    lin = wn.Linear(4, 2, config=cfg)
    lin.params["weight"][...] = 0.01
    wn.save(wn.Sequential(lin), tmp_path / "m.h5")
    x = np.tile(np.array([[0.0, 0.0, 20.0, 1.0], [0.0, -30.0, 0.0, -2.0]], np.float32), (5, 1))
    y = np.zeros(10, np.int64)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y + np.arange(10) % 2)
    r = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz")])
    assert r.exit_code == 0, r.output
    assert "saturated: inputs 25.00% outputs 0.00%" in r.output


def test_ctrl_c_wrapped_by_numba_still_says_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C while a compiled kernel loads its constants reaches Python as Numba's SystemError with the
    KeyboardInterrupt as its cause (seen once in CI): train treats it as the interrupt it is."""
    from witnp.cli.common import is_interrupt

    def interrupted(*a, **k):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set") from e
    monkeypatch.setattr(wn.train, "run_recipe", interrupted)
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), "--set", "stages.0.epochs=1",
                                  "--no-progress"])
    assert r.exit_code == 130 and "interrupted" in r.output and "--resume" in r.output
    assert not is_interrupt(SystemError("a real one")) and is_interrupt(KeyboardInterrupt())
