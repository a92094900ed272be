"""Chip mode: each simulated chip keeps one programming error for all its inferences."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.analysis.chips import CHIP_SEED, ChipSource, chip_metrics, summary
from witnp.cli.main import main


def _model():
    cfg = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", use_auto_scale=False, scale_x=16,
                         scale_weight=64, scale_y=16, noise_level=6)
    rng = np.random.default_rng(0)
    return wn.Sequential(wn.Linear(8, 16, config=cfg, rng=rng), wn.ReLU(), wn.Linear(16, 3, config=cfg, rng=rng))


def _data(n=60):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, :3].argmax(1)).astype(np.int64)


def test_one_chip_keeps_its_error_over_every_forward():
    m, (x, _) = _model(), _data()
    src = ChipSource(CHIP_SEED + 3)
    y1 = m.forward(x, rng=src.begin_forward())[0]
    y2 = np.concatenate([m.forward(x[i:i + 7], rng=src.begin_forward())[0] for i in range(0, len(x), 7)])
    np.testing.assert_array_equal(y1, y2)            # batches of 7 see the same chip as one batch of 60
    y3 = m.forward(x, rng=ChipSource(CHIP_SEED + 4).begin_forward())[0]
    assert not np.array_equal(y1, y3)                 # another chip, another error


def test_a_chip_is_a_normal_read_drawn_once():
    """With one batch, chip c's metrics are exactly those of the NORMAL read seeded CHIP_SEED + c (same draws,
    same statistics, by construction: no false alarm); with batches of 7 the chip's figures stay, the reads' move."""
    m, (x, y) = _model(), _data()
    chips = chip_metrics(m, x, y, 5, batch_size=len(x))
    reads = [wn.train.evaluate(m, x, y, batch_size=len(x), rng=np.random.default_rng(CHIP_SEED + c)) for c in range(5)]
    assert chips == reads
    assert chip_metrics(m, x, y, 5, batch_size=7) == chips
    small = [wn.train.evaluate(m, x, y, batch_size=7, rng=np.random.default_rng(CHIP_SEED + c)) for c in range(5)]
    assert small != reads


def test_read_noise_rides_on_the_chip_error():
    """Each read = the chip's fixed draw + r x a fresh one: the fixed part is the chip's draw exactly, the read
    part has std r and is new on every read. 20000 draws: the std estimate's relative error is ~0.5 %, so the
    10 % bands below do not fail by chance (seeded, in any case)."""
    chip = ChipSource(CHIP_SEED).standard_normal((20000,))
    src = ChipSource(CHIP_SEED, read_noise=0.5)
    r1 = src.begin_forward().standard_normal((20000,)) - chip
    r2 = src.begin_forward().standard_normal((20000,)) - chip
    assert 0.45 < r1.std() < 0.55 and 0.45 < r2.std() < 0.55
    assert abs(np.corrcoef(r1, r2)[0, 1]) < 0.05 and abs(np.corrcoef(r1, chip)[0, 1]) < 0.05
    m, (x, y) = _model(), _data()
    quiet = chip_metrics(m, x, y, 4, batch_size=len(x))
    assert chip_metrics(m, x, y, 4, batch_size=len(x), read_noise=0.0) == quiet
    loud = chip_metrics(m, x, y, 4, batch_size=len(x), read_noise=1.0)
    assert loud != quiet and loud == chip_metrics(m, x, y, 4, batch_size=len(x), read_noise=1.0)  # seeded
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="read_noise"):
            ChipSource(1, read_noise=bad)


class _Uniform(wn.noise.NoiseModelBase):
    """A user's own error model: m + level x e (no dependence on |m|)."""

    name = "TEST_UNIFORM"

    def apply(self, m, e):
        return np.asarray(m, np.float32) + np.float32(self.level) * e

    def derivative(self, m, e):
        return np.ones_like(np.asarray(m, np.float32))


def test_a_registered_noise_model_is_a_chip_model(monkeypatch):
    monkeypatch.setitem(wn.noise.NOISE_MODELS, "TEST_UNIFORM", _Uniform)
    m, (x, y) = _model(), _data()
    own = wn.train.with_config(m, {"noise_model": "TEST_UNIFORM"})
    src = ChipSource(CHIP_SEED + 1)
    y1 = own.forward(x, rng=src.begin_forward())[0]
    y2 = np.concatenate([own.forward(x[i:i + 9], rng=src.begin_forward())[0] for i in range(0, len(x), 9)])
    np.testing.assert_array_equal(y1, y2)  # one chip under the user's model: one error over every forward
    assert not np.array_equal(y1, m.forward(x, rng=ChipSource(CHIP_SEED + 1).begin_forward())[0])  # not NORMAL's
    assert chip_metrics(own, x, y, 3) != chip_metrics(m, x, y, 3)


def test_summary_and_refusals():
    s = summary([0.9, 0.8, 1.0, 0.7])
    assert s["mean"] == pytest.approx(0.85) and s["worst"] == 0.7 and s["chips"] == 4
    assert s["p5"] == pytest.approx(np.percentile([0.9, 0.8, 1.0, 0.7], 5))
    lo = summary([0.1, 0.3, 0.2], higher_is_better=False)  # a loss: its bad tail is the top
    assert lo["worst"] == 0.3 and lo["p95"] == pytest.approx(np.percentile([0.1, 0.3, 0.2], 95))
    with pytest.raises(ValueError, match="chips=0"):
        chip_metrics(_model(), *_data(), 0)
    with pytest.raises(ValueError, match="float model"):
        chip_metrics(wn.Sequential(wn.Linear(8, 3)), *_data(), 2)


def test_cli_chips(tmp_path):
    wn.save(_model(), tmp_path / "m.h5")
    x, y = _data()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--chips", "6",
                                  "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert "on 6 simulated chips" in r.output and "5th percentile" in r.output
    rep = json.loads((tmp_path / "c.json").read_text())
    assert len(rep["chips"]) == 6 and rep["summary"]["accuracy"]["chips"] == 6
    rn = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--chips", "6",
                                   "--read-noise", "0.5", "--json", str(tmp_path / "r.json")])
    assert rn.exit_code == 0 and "read noise x0.5 on top" in rn.output, rn.output
    assert json.loads((tmp_path / "r.json").read_text())["read_noise"] == 0.5
    bad = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--chips", "3", "--noise-levels", "0-2"])
    assert bad.exit_code == 2 and "--chips" in bad.output


def test_cli_chips_plot(tmp_path):
    pytest.importorskip("matplotlib")
    wn.save(_model(), tmp_path / "m.h5")
    x, y = _data()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    png = tmp_path / "chips.png"
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--chips", "5",
                                  "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in r.output
    # the plot may not overwrite the model it reads
    same = CliRunner().invoke(main, ["eval", str(tmp_path / "m.h5"), "--data", str(tmp_path / "d.npz"), "--chips",
                                     "2", "--plot", str(tmp_path / "m.h5")])
    assert same.exit_code != 0 and wn.load(tmp_path / "m.h5") is not None


def test_nat_with_chip_noise_holds_one_chip_per_epoch(monkeypatch):
    """fit(noise_mode="chip"): every batch of an epoch sees the same programming error, the next epoch another;
    noise_mode "read" draws anew every batch."""
    from witnp.noise import NOISE_MODELS
    from witnp.train.data import Dataset
    drawn = []
    model_cls = NOISE_MODELS["NORMAL"]
    real = model_cls.draw
    monkeypatch.setattr(model_cls, "draw", lambda self, rng, shape: drawn.append(real(self, rng, shape)) or drawn[-1])
    x, y = _data(48)
    data = Dataset(x, y, x[:8], y[:8])
    for mode in ("chip", "read"):
        drawn.clear()
        m = _model()
        wn.train.fit(m, data, optimizer=wn.optim.SGD(m, lr=0.01), epochs=2, batch_size=16, noise_mode=mode,
                     log=lambda s: None)
        # the first Linear's E1 in order: epoch 1's 3 batches, its 3 validation draws, then epoch 2's 3 batches
        e1 = [d for d in drawn if d.shape == (16, 16)]
        assert len(e1) == 12
        same = [np.array_equal(e1[0], e1[k]) for k in (1, 2)] + [np.array_equal(e1[6], e1[k]) for k in (7, 8)]
        assert all(same) if mode == "chip" else not any(same)
        assert not np.array_equal(e1[0], e1[6])  # a new chip (or draw) the next epoch
    with pytest.raises(ValueError, match="noise_mode='fixed'"):
        wn.train.fit(_model(), data, optimizer=wn.optim.SGD(_model(), lr=0.1), epochs=1, noise_mode="fixed")
