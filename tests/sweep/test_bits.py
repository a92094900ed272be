"""Bit-width search: the search against a metric known in closed form, and on a synthetic model whose last
layer needs more output bits, through `witnp search-bits` on a process pool."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.sweep import bits as sb


def _costs(**fixed):
    return {n: {"macs": 100, "split": True, "outputs": 10, "x_bits": sb.BITS,
                "y_bits": (8,) if fixed.get(n) else sb.BITS} for n in ("a", "b", "c")}


def _fake(need, interact=0.0):
    """run(cands): accuracy 0.9 minus 0.02 per missing bit below `need` {(layer, 0|1): bits}, minus `interact`
    when two or more widths are narrowed at once (what the 'together' step must repair)."""
    def run(cands):
        out = []
        for c in cands:
            miss = sum(max(0, b - c[n][t]) for (n, t), b in need.items())
            narrowed = sum(c[n][t] < (12 if t == 0 or n != "c" else 8) for n in c for t in (0, 1))
            out.append({"val": {"loss": 1.0, "accuracy": 0.9 - 0.02 * miss - (interact if narrowed >= 2 else 0)}})
        return out
    return run


def test_each_width_is_the_smallest_within_the_budget():
    found = sb.search(["a", "b", "c"], _costs(), 1.0, _fake({("b", 1): 11, ("a", 0): 9}), log=lambda s: None)
    assert found["bits"] == {"a": (9, 8), "b": (8, 11), "c": (8, 8)} and found["met"]
    assert found["reference"] == pytest.approx(0.9) and found["target"] == pytest.approx(0.89)
    assert {t["phase"] for t in found["tried"]} == {"reference", "sensitivity", "together"}


def test_together_widens_until_the_budget_holds():
    # each narrowing alone is free, but narrowing two costs 0.015: one width must go back up
    found = sb.search(["a", "b", "c"], _costs(), 1.0, _fake({}, interact=0.015), log=lambda s: None)
    assert found["met"] and any(t["phase"] == "widen" for t in found["tried"])
    assert found["result"]["val"]["accuracy"] >= 0.89 - 1e-12


def test_an_int8_output_is_not_searched_and_cost_counts_the_split():
    found = sb.search(["a", "b", "c"], _costs(c=True), 1.0, _fake({("a", 1): 12}), log=lambda s: None)
    assert found["bits"]["c"][1] == 8 and found["bits"]["a"] == (8, 12)
    assert not any(t["bits"]["c"][1] != 8 for t in found["tried"])
    cost = sb.total_cost(_costs(), {"a": (9, 8), "b": (8, 12), "c": (8, 8)})
    assert cost == {"digital_macs": 100, "output_bits": 80 + 120 + 80, "cost": 380}


def test_layer_cost_reads_the_model():
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="PN")
    m = wn.Sequential(wn.Conv2d(1, 4, 3, padding=1, config=cfg), wn.ReLU(), wn.Flatten(), wn.Linear(4 * 36, 5, config=cfg))
    c = sb.layer_cost(m, np.zeros((1, 1, 6, 6), np.float32))
    assert c["0"] == {"macs": 4 * 9 * 36, "split": False, "outputs": 4 * 36, "x_bits": sb.BITS, "y_bits": (8,)}
    assert c["3"] == {"macs": 2 * 4 * 36 * 5, "split": True, "outputs": 5, "x_bits": sb.BITS,
                      "y_bits": sb.BITS}  # PN doubles the rows
    g = wn.Sequential(wn.GRU(3, 4, config=cfg), wn.Linear(4, 2, config=cfg))
    c = sb.layer_cost(g, np.zeros((1, 5, 3), np.float32))
    assert c["0"] == {"macs": 5 * (12 * 3 + 12 * 4), "split": False, "outputs": 5 * 4, "x_bits": (8,),
                      "y_bits": (8, 9, 10)}


TOML = """seed = 0
data = "{data}"
out = "{out}"
batch_size = 64
val_fraction = 0.0
[quant]
handle_neg_in = "PN"
use_auto_scale = true
auto_scale_update_step = 20
[model]
layers = [{{ type = "Linear", in_features = 2, out_features = 2, bias = false }},
          {{ type = "Linear", in_features = 2, out_features = 3, bias = false }}]
[[stages]]
name = "float"
epochs = 1
lr = 0.001
[[stages]]
name = "qat"
epochs = 1
lr = 0.001
use_quantization = true
"""


def _synthetic(tmp_path):
    """Layer 1's logits are (h1, -h1, 16·h2): at 8 output bits (io_max 16, steps of 1/8) the sign of a small
    h1 is lost, at 12 bits (steps of 1/128) it is kept; layer 0 (the identity on x1 in (-1, 1), x2 in {0, 1})
    loses little at 8 bits."""
    rng = np.random.default_rng(0)

    def split(n):
        x1 = rng.uniform(-1, 1, n).astype(np.float32)
        x2 = (rng.uniform(size=n) < 1 / 3).astype(np.float32)
        y = np.where(x2 == 1, 2, np.where(x1 > 0, 0, 1)).astype(np.int64)
        return np.stack([x1, x2], 1), y

    (xt, yt), (xv, yv), (xs, ys) = split(3000), split(3000), split(3000)
    np.savez(tmp_path / "d.npz", x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)
    m = wn.Sequential(wn.Linear(2, 2, bias=False), wn.Linear(2, 3, bias=False))
    m.children["0"].params["weight"][...] = np.eye(2, dtype=np.float32)
    m.children["1"].params["weight"][...] = np.array([[1, 0], [-1, 0], [0, 16]], np.float32)
    wn.save(m, tmp_path / "float.h5", data=str(tmp_path / "d.npz"))
    (tmp_path / "run.toml").write_text(TOML.format(data=tmp_path / "d.npz", out=tmp_path / "run"))


def test_search_bits_finds_the_layer_that_needs_output_bits(tmp_path):
    _synthetic(tmp_path)
    r = CliRunner().invoke(main, ["search-bits", "--config", str(tmp_path / "run.toml"), "--model",
                                  str(tmp_path / "float.h5"), "--budget", "1.0", "--out", str(tmp_path / "bits"),
                                  "--executor", "processes", "--workers", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "bits" / "result.json").read_text())
    assert res["bits"]["0"] == [8, 8] and res["bits"]["1"][0] == 8 and res["bits"]["1"][1] > 8, res["bits"]
    rows = res["rows"]
    assert rows["all 8-bit"]["val"]["accuracy"] < rows["all 12-bit"]["val"]["accuracy"] - 0.01
    assert rows["found"]["val"]["accuracy"] >= rows["all 12-bit"]["val"]["accuracy"] - 0.01
    block = (tmp_path / "bits" / "overrides.toml").read_text()
    assert f'[model.overrides."1"]   # Linear\nx_quant_bits = 8\ny_quant_bits = {res["bits"]["1"][1]}' in block
    # the block pastes into the run config: a witnp train of it runs with those widths
    (tmp_path / "with.toml").write_text((tmp_path / "run.toml").read_text().replace("[[stages]]", block + "\n[[stages]]", 1))
    t = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "with.toml"), "--no-progress"])
    assert t.exit_code == 0, t.output
    assert wn.load(tmp_path / "run" / "qat.h5").children["1"].config.y_quant_bits == res["bits"]["1"][1]


def test_a_candidate_with_a_qat_fine_tune_is_deterministic_and_differs(tmp_path):
    _synthetic(tmp_path)
    from witnp.train.data import load_npz
    shared = {"model": wn.load(tmp_path / "float.h5"), "data": load_npz(tmp_path / "d.npz")}
    task = {"quant": {"handle_neg_in": "PN", "use_auto_scale": True, "auto_scale_update_step": 20}, "per_layer": {},
            "calibration": "extrema", "layer_calibration": {}, "batch_size": 64, "lr": 0.01, "seed": 0,
            "bits": {"0": [8, 8], "1": [8, 8]}, "finetune_epochs": 0}
    plain = sb.evaluate_candidate(task, shared)
    tuned = sb.evaluate_candidate(dict(task, finetune_epochs=1), shared)
    assert tuned == sb.evaluate_candidate(dict(task, finetune_epochs=1), shared)
    assert tuned["val"]["loss"] != plain["val"]["loss"] and "test" not in tuned
    assert "test" in sb.evaluate_candidate(dict(task, test=True), shared)
