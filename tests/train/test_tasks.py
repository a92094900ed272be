"""Tasks: the new losses and metrics against hand-computed values, their gradients against central
differences (float64), and a frame task and a regression task trained end to end through `witnp train`."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import witnp as wn
from witnp.cli.main import main
from witnp.train.losses import L1Loss, SNRLoss
from witnp.train.tasks import TASKS, get_task, main_metric, task_of

from ..conftest import central_diff


def test_l1_and_snr_by_hand_and_their_gradients():
    rng = np.random.default_rng(2)
    p, t = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    v, g = L1Loss()(p.astype(np.float32), t)
    assert v == pytest.approx(np.abs(p - t).mean(), rel=1e-6)
    np.testing.assert_allclose(g, central_diff(lambda: float(np.abs(p - t).mean()), p, 1e-7), rtol=1e-5, atol=1e-7)

    def snr_ref():
        sig, err = (t * t).sum(1) + 1e-8, ((t - p) ** 2).sum(1) + 1e-8
        return float(-np.mean(10 * np.log10(sig / err)))
    v, g = SNRLoss()(p.astype(np.float32), t)
    assert v == pytest.approx(snr_ref(), rel=1e-5)
    np.testing.assert_allclose(g, central_diff(snr_ref, p, 1e-6), rtol=1e-4, atol=1e-6)
    # scale-aware: the right shape at the wrong gain loses (SI-SNR would not)
    assert SNRLoss()((2 * t).astype(np.float32), t)[0] == pytest.approx(0.0, abs=1e-5)
    assert SNRLoss()(t.astype(np.float32), t)[0] < -60


def test_cross_entropy_per_frame_is_the_mean_over_frames():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 4, 3))
    y = rng.integers(0, 3, size=(2, 4))
    ce = wn.CrossEntropyLoss(label_smoothing=0.1)
    v, g = ce(z.astype(np.float32), y)
    v2, g2 = ce(z.reshape(8, 3).astype(np.float32), y.reshape(8))
    assert v == v2 and g.shape == z.shape
    np.testing.assert_array_equal(g.reshape(8, 3), g2)

    def ref():
        lp = z.reshape(8, 3) - np.log(np.exp(z.reshape(8, 3)).sum(1, keepdims=True))
        q = np.full((8, 3), 0.1 / 3)
        q[np.arange(8), y.reshape(8)] += 0.9
        return float(-(q * lp).sum() / 8)
    np.testing.assert_allclose(g, central_diff(ref, z, 1e-6), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"expected \(2, 4\) \(a label per frame\)"):
        ce(z.astype(np.float32), y[:, :3])


def test_classification_metrics_by_hand():
    # true 0 0 1 1 2, predicted 0 1 1 1 0: class 0 F1 = 2/(2+1+1) = 0.5, class 1 = 2·2/(4+1) = 0.8, class 2 = 0
    logits = np.eye(3, dtype=np.float32)[[0, 1, 1, 1, 0]]
    y = np.array([0, 0, 1, 1, 2])
    m = TASKS["classify"].metrics(logits, y)
    assert m["accuracy"] == pytest.approx(0.6) and m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert TASKS["classify"].extras(logits, y)["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # per frame: the same numbers over (N, T)
    f = TASKS["frames"].metrics(logits.reshape(1, 5, 3), y.reshape(1, 5))
    assert f == {"frame_accuracy": m["accuracy"], "frame_f1": m["macro_f1"]}


def test_regression_metrics_by_hand():
    y = np.array([[1.0, -1.0], [2.0, 0.0]], np.float32)
    p = np.array([[1.0, -0.5], [1.0, 0.0]], np.float32)
    m = TASKS["regress"].metrics(p, y)
    mse = (0.25 + 1.0) / 4
    assert m["mse"] == pytest.approx(mse)
    assert m["snr_db"] == pytest.approx(np.mean([10 * np.log10(2 / 0.25), 10 * np.log10(4 / 1.0)]), rel=1e-6)
    assert m["psnr_db"] == pytest.approx(10 * np.log10(4 / mse), rel=1e-6)


def test_tasks_from_labels_and_by_name():
    assert task_of(np.zeros(3, np.int64)).name == "classify" and task_of(np.zeros((3, 2), np.int64)).name == "frames"
    assert task_of(np.zeros((3, 2), np.float32)).name == "regress"
    with pytest.raises(ValueError, match="task regress needs float targets"):
        get_task("regress", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="task 'count'"):
        get_task("count")
    assert main_metric({"loss": 1.0, "snr_db": 3.0}) == ("snr_db", 3.0, True)
    assert main_metric({"loss": 1.0}) == ("loss", 1.0, False)


def _seq_config(tmp_path, name, data, layers, task, loss=None, stages=2, float_epochs=2):
    st = [f"[[stages]]\nname = \"float\"\nepochs = {float_epochs}\nlr = 0.01\n",
          "[[stages]]\nname = \"qat\"\nepochs = 1\nlr = 0.002\nuse_quantization = true\n",
          "[[stages]]\nname = \"nat\"\nepochs = 1\nlr = 0.002\nuse_quantization = true\nnoise_level = 4\n"][:stages]
    text = (f'seed = 0\ndata = "{data}"\nout = "{tmp_path / name}"\ntask = "{task}"\nbatch_size = 32\n'
            f'noise_seeds = 2\n' + (f'loss = "{loss}"\n' if loss else "") + "[model]\nlayers = [\n"
            + ",\n".join(layers) + "]\n" + "".join(st))
    (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path / f"{name}.toml"


def test_frame_classification_end_to_end(tmp_path):
    """Voice activity, synthetic: a frame is active when its energy is high; a GRU over the frames and a Linear
    per frame; the table reports frame accuracy, the engine reproduces the QAT model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 12, 4)).astype(np.float32) * rng.choice([0.2, 1.5], size=(240, 12, 1)).astype(np.float32)
    y = (np.abs(x).mean(2) > 0.6).astype(np.int64)
    np.savez(tmp_path / "vad.npz", x_train=x[:160], y_train=y[:160], x_val=x[160:200], y_val=y[160:200],
             x_test=x[200:], y_test=y[200:])
    cfg = _seq_config(tmp_path, "vad", tmp_path / "vad.npz",
                      ['{ type = "GRU", input_size = 4, hidden_size = 8 }',
                       '{ type = "Linear", in_features = 8, out_features = 2 }'], "frames", stages=3,
                      float_epochs=15)
    r = CliRunner().invoke(main, ["train", "--config", str(cfg), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "frame acc" in r.output
    ev = json.loads((tmp_path / "vad" / "eval.json").read_text())
    assert set(ev["nat"]["quantized"]) == {"loss", "frame_accuracy", "frame_f1"}
    assert ev["nat"]["quantized"]["frame_accuracy"] > 0.8
    assert np.array(ev["nat"]["confusion"]["quantized"]).sum() == 40 * 12
    rows = [json.loads(s) for s in (tmp_path / "vad" / "metrics.jsonl").read_text().splitlines()]
    assert {"train_frame_accuracy", "val_frame_accuracy", "val_frame_f1"} <= set(rows[0])
    e = CliRunner().invoke(main, ["eval", str(tmp_path / "vad" / "best.h5"), "--integer"])
    assert e.exit_code == 0 and "bit-identical to the quantized model: True" in e.output, e.output
    assert "frame_accuracy: " in e.output


@pytest.mark.parametrize("loss", ["mse", "l1", "snr"])
def test_regression_end_to_end(tmp_path, loss):
    """Denoising, synthetic: a clean frame from a noisy one (8 values) with two Linear layers; the best epoch is
    the highest validation SNR; the table reports SNR in dB."""
    rng = np.random.default_rng(1)
    clean = np.sin(np.linspace(0, 6, 8)[None, :] * rng.uniform(0.5, 2, (300, 1)) + rng.uniform(0, 6, (300, 1)))
    noisy = clean + 0.3 * rng.normal(size=clean.shape)
    x, y = noisy.astype(np.float32), clean.astype(np.float32)
    np.savez(tmp_path / "dn.npz", x_train=x[:200], y_train=y[:200], x_val=x[200:250], y_val=y[200:250],
             x_test=x[250:], y_test=y[250:])
    cfg = _seq_config(tmp_path, "dn", tmp_path / "dn.npz",
                      ['{ type = "Linear", in_features = 8, out_features = 16 }', '{ type = "ReLU" }',
                       '{ type = "Linear", in_features = 16, out_features = 8 }'], "regress", loss=loss,
                      float_epochs=30)
    r = CliRunner().invoke(main, ["train", "--config", str(cfg), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "SNR dB" in r.output
    ev = json.loads((tmp_path / "dn" / "eval.json").read_text())
    q = ev["qat"]["quantized"]
    assert set(q) == {"loss", "mse", "snr_db", "psnr_db"} and "confusion" not in ev["qat"]
    noisy_snr = TASKS["regress"].metrics(x[250:], y[250:])["snr_db"]
    assert ev["qat"]["float"]["snr_db"] > noisy_snr  # it denoises
    hist = [json.loads(s) for s in (tmp_path / "dn" / "metrics.jsonl").read_text().splitlines()]
    fl = [h for h in hist if h["stage"] == "float"]
    best = wn.load(tmp_path / "dn" / "float.h5")
    d = wn.train.data.load_npz(tmp_path / "dn.npz")
    got = wn.train.evaluate(best, d.x_val, d.y_val)["snr_db"]
    assert got == pytest.approx(max(h["val_snr_db"] for h in fl), abs=1e-9)  # the kept epoch: the best val SNR
