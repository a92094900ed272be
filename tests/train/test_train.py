"""The fit loop (determinism, resume, divergence, metrics files) and the float -> QAT -> NAT recipe."""
import json
import os

import numpy as np
import pytest

import witnp as wn
from witnp.train.data import Dataset, load_npz
from witnp.train.loop import Stage, TrainingDiverged, fit, format_table, run_recipe

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "digits.npz")
QAT = dict(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_y=16, scale_weight=16,
           auto_scale_update_step=5, use_auto_scale=True)


def small_data(n_train=256, n_test=128):
    d = load_npz(DATA)
    return Dataset(d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test], d.y_test[:n_test])


def mlp(seed=0, cfg=None):
    wn.manual_seed(seed)
    return wn.Sequential(wn.Flatten(), wn.Linear(64, 32, config=cfg), wn.ReLU(), wn.Linear(32, 10, config=cfg))


def train(model, data, tmp_path=None, **kw):
    opt = wn.optim.Adam(model, lr=3e-3)
    return fit(model, data, optimizer=opt, batch_size=32, seed=7, progress=False, log=lambda s: None, **kw)


def curve(h):
    return [(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in h]


def test_same_seed_same_curve():
    cfg = wn.LayerConfig(**QAT, noise_level=3)
    d = small_data()
    assert curve(train(mlp(0, cfg), d, epochs=3)) == curve(train(mlp(0, cfg), d, epochs=3))


def test_resume_gives_the_uninterrupted_curve(tmp_path):
    cfg = wn.LayerConfig(**QAT, noise_level=3)
    d = small_data()
    full = train(mlp(0, cfg), d, epochs=5, keep_best=False)
    ck = str(tmp_path / "ck.h5")
    first = train(mlp(0, cfg), d, epochs=5, checkpoint=ck, stop_after=2, keep_best=False)
    assert len(first) == 2
    model = mlp(1, cfg)  # other initial weights: everything must come from the checkpoint
    resumed = fit(model, d, optimizer=wn.optim.Adam(model, lr=3e-3), epochs=5, batch_size=32, seed=7,
                  checkpoint=ck, resume=True, keep_best=False, progress=False, log=lambda s: None)
    assert curve(resumed) == curve(full)


def test_divergence_stops_with_a_clear_error():
    d = small_data(64, 32)
    d.x_train = d.x_train * 1e30
    model = mlp()
    with pytest.raises(TrainingDiverged, match=r"fit: (the loss became (nan|inf)|non-finite values) at epoch 1, batch [12] "):
        fit(model, d, optimizer=wn.optim.SGD(model, lr=10.0), epochs=1, progress=False, log=lambda s: None)


def test_metrics_files_and_best_model(tmp_path):
    h = train(mlp(), small_data(), epochs=3, log_dir=str(tmp_path), patience=5)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[0]["stage"] == ""
    lines = open(tmp_path / "metrics.csv").read().splitlines()
    assert lines[0].startswith("epoch,stage,train_loss") and len(lines) == 4
    assert len(h) == 3


def test_recipe_recovers_quantized_and_noisy_accuracy(tmp_path):
    """The manual's story on a small model: float training loses accuracy on the chip; QAT recovers the
    quantized metric and NAT the noisy one."""
    d = small_data(600, 200)
    stages = [Stage("float", {"use_quantization": False}, 6, 3e-3), Stage("qat", QAT, 4, 1e-3),
              Stage("nat", dict(QAT, noise_level=4), 4, 1e-3)]
    lines = []
    model, rows, hist = run_recipe(mlp(), d, stages, noise_level=4, noise_seeds=3, out_dir=str(tmp_path),
                                   log=lines.append, progress=False)
    table = format_table(rows, 4, 3)
    assert "quant loss" in table and table.count("\n") == 4
    assert rows["qat"]["quantized"]["accuracy"] >= rows["float"]["quantized"]["accuracy"]
    assert rows["nat"]["noisy"]["accuracy"][0] >= rows["float"]["noisy"]["accuracy"][0]
    assert rows["nat"]["quantized"]["accuracy"] > 0.8
    assert os.path.exists(tmp_path / "nat.h5")
    assert wn.load(tmp_path / "nat.h5").children["1"].config.noise_level == 4


def test_the_test_split_never_influences_model_selection(tmp_path):
    """Two runs on the same training data whose test splits differ (labels scrambled): the same validation
    metrics every epoch, the same best epochs, the same weights; only the reported test figures differ."""
    from click.testing import CliRunner
    from witnp.cli.main import main
    z = dict(np.load(DATA))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", **z)
    np.savez(tmp_path / "b.npz", **dict(z, y_test=rng.permutation(z["y_test"])))
    fast = ["--set", "stages.0.epochs=3", "--set", "stages.1.epochs=2", "--set", "stages.2.epochs=2",
            "--set", "noise_seeds=2", "--set", "patience=1", "--no-progress"]
    runs = {}
    for k in ("a", "b"):
        r = CliRunner().invoke(main, ["train", "--out", str(tmp_path / f"run_{k}"), "--set",
                                      f"data='{tmp_path / (k + '.npz')}'"] + fast)
        assert r.exit_code == 0, r.output
        assert " validation / 360 test samples" in r.output
        runs[k] = tmp_path / f"run_{k}"
    rows = {k: [{c: v for c, v in json.loads(line).items() if c != "seconds"}
                for line in open(runs[k] / "metrics.jsonl")] for k in runs}
    assert rows["a"] == rows["b"]
    wa, wb = wn.load(runs["a"] / "best.h5"), wn.load(runs["b"] / "best.h5")
    for (na, pa), (nb, pb) in zip(wa.named_params(), wb.named_params(), strict=True):
        np.testing.assert_array_equal(pa, pb, err_msg=na)
    ea, eb = json.loads((runs["a"] / "eval.json").read_text()), json.loads((runs["b"] / "eval.json").read_text())
    assert ea["nat"]["quantized"]["accuracy"] != eb["nat"]["quantized"]["accuracy"]  # the test split is reported


def test_validation_split_is_stratified_seeded_and_refused_when_impossible():
    from witnp.train.data import with_validation
    d = load_npz(DATA)
    v = with_validation(d, 0.1, seed=3)
    assert len(v.x_val) + len(v.x_train) == len(d.x_train) and v.x_test is d.x_test
    counts = np.bincount(d.y_train)
    np.testing.assert_array_equal(np.bincount(v.y_val), np.round(0.1 * counts).astype(int))
    np.testing.assert_array_equal(with_validation(d, 0.1, seed=3).x_val, v.x_val)
    assert not np.array_equal(with_validation(d, 0.1, seed=4).x_val, v.x_val)
    assert with_validation(d, 0.0) is d and with_validation(v, 0.3) is v  # its own split wins
    with pytest.raises(ValueError, match="val_fraction"):
        with_validation(d, 1.5)


def test_schedules_with_warmup():
    from witnp.train.loop import make_schedule
    m = wn.Sequential(wn.Linear(2, 2))
    opt = wn.optim.SGD(m, lr=0.4)
    s = make_schedule(opt, {"type": "cosine", "warmup_epochs": 3, "eta_min": 0.0}, 7)
    lrs = [opt.lr] + [s.step() for _ in range(6)]
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert lrs[3:] == pytest.approx([0.4 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])
    opt = wn.optim.SGD(m, lr=1.0)
    s = make_schedule(opt, {"type": "step", "step_size": 2, "gamma": 0.5}, 6)
    assert [opt.lr] + [s.step() for _ in range(5)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert make_schedule(opt, None, 3) is None


def test_stage_options_from_the_run_config():
    from witnp.cli import runconfig
    cfg = runconfig.resolve(None, ["weight_decay=0.01", "stages.1.optimizer='sgd'", "stages.1.clip_norm=2.0",
                                   "stages.2.schedule={type='step', step_size=1, gamma=0.5}", "label_smoothing=0.1"])
    st = runconfig.stages_of(cfg)
    assert st[0].options["weight_decay"] == 0.01 and st[0].options["label_smoothing"] == 0.1
    assert st[1].options["optimizer"] == "sgd" and st[1].options["clip_norm"] == 2.0
    assert st[2].options["schedule"] == {"type": "step", "step_size": 1, "gamma": 0.5} and "schedule" not in st[0].options
    data = load_npz(DATA)
    small = Dataset(data.x_train[:64], data.y_train[:64], data.x_test[:32], data.y_test[:32])
    model = runconfig.build_model(cfg)
    stages = [Stage(s.name, s.changes, 2, s.lr, s.per_layer, s.options) for s in st]
    _, _, hist = run_recipe(model, small, stages, log=lambda m: None, noise_seeds=1)
    assert [round(r["lr"], 6) for r in hist["nat"]] == [0.001, 0.0005]  # the step schedule ran in that stage
