"""LayerConfig.rounding = "floor" (Witmem's mapper from 0.8.8 on): the arrays' division by G rounds down.
Golden cases written by hand from the formulas (chip.md §2, §4 with ⌊⌋ for R; docs/gru.md), the training
forward and backward, the file, and the engine, C reference and ONNX graph, all equal under floor."""
import numpy as np
import pytest

import witnp as wn
from witnp.handoff.engine import IntegerEngine
from witnp.handoff.export import export_model

f32 = np.float32


def cfg(**kw):
    base = dict(use_quantization=True, use_auto_scale=False, scale_x=16, scale_weight=32, scale_y=8, rounding="floor")
    return wn.LayerConfig(**{**base, **kw})


def test_linear_by_hand_with_and_without_the_split():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 20, (40, 6)).astype(f32)
    for xb in (8, 10):
        c = cfg(x_quant_bits=xb, bias_d=3.0)
        lin = wn.Linear(6, 5, config=c, rng=rng)
        lin.params["bias"][:] = rng.normal(size=5).astype(f32)
        sx, sw, sy = 16.0, 32.0, 8.0
        G = sx * sw / sy  # 64
        Xq = np.rint(np.clip(x * f32(sx), 0, 2 ** xb - 1)).astype(np.int64)
        Wq = np.rint(np.clip(lin.params["weight"] * f32(sw), -128, 127)).astype(np.int64)
        k = f32(sx * sw) / f32(128)
        lo, hi = -128, 127
        if xb == 8:
            Bq = np.rint(np.clip(lin.params["bias"] * k, -128 * 8, 127 * 8)).astype(np.int64)
            y = np.floor(np.clip((Xq @ Wq.T + 128 * Bq) / G, lo, hi)) / sy
        else:
            Bd = np.rint(np.float32(3.0) * k).astype(np.int64)
            Bl = np.rint(np.clip(np.rint(lin.params["bias"] * k) - Bd, -128 * 8, 127 * 8)).astype(np.int64)
            Xd, Xl = Xq // 256, Xq % 256
            yl = np.floor(np.clip((Xl @ Wq.T + 128 * Bl) / G, lo, hi))
            yd = np.floor((256 * (Xd @ Wq.T) + 128 * Bd) / G)
            y = np.clip(yl + yd, lo, hi) / sy
        got = lin(x)
        np.testing.assert_array_equal(got, y.astype(f32))
        rnd = wn.Linear(6, 5, config=c.replace(rounding="round"))
        rnd.params.update({k_: v.copy() for k_, v in lin.params.items()})
        assert not np.array_equal(rnd(x), got)  # the two roundings differ on these inputs


def _conv_by_hand(Xp, Xn, Wq, Wn, Bq, G, sy):
    """PN Conv2d, stride 1, padding 1, 3x3, integer codes (C, H, W): the chip's rule with ⌊⌋."""
    B, C, H, W = Xp.shape
    O = Wq.shape[0]
    pad = lambda a: np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))  # noqa: E731
    Pp, Pn = pad(Xp), pad(Xn)
    acc = np.zeros((B, O, H, W), np.int64)
    for i in range(3):
        for j in range(3):
            acc += np.einsum("bchw,oc->bohw", Pp[:, :, i:i + H, j:j + W], Wq[:, :, i, j])
            acc += np.einsum("bchw,oc->bohw", Pn[:, :, i:i + H, j:j + W], Wn[:, :, i, j])
    acc += 128 * Bq[None, :, None, None]
    return np.clip(np.floor(np.clip(acc / G, -128, 127)), -128, 127) / sy


def test_conv2d_pn_by_hand():
    rng = np.random.default_rng(1)
    c = cfg(handle_neg_in="PN", scale_x=8)
    conv = wn.Conv2d(2, 3, 3, padding=1, config=c, rng=rng)
    x = rng.normal(size=(2, 2, 5, 5)).astype(f32) * 6
    sx, sw, sy = 8.0, 32.0, 8.0
    Xp = np.rint(np.clip(np.maximum(x, 0) * f32(sx), 0, 255)).astype(np.int64)
    Xn = np.rint(np.clip(np.maximum(-x, 0) * f32(sx), 0, 255)).astype(np.int64)
    Wq = np.rint(np.clip(conv.params["weight"] * f32(sw), -128, 127)).astype(np.int64)
    Wn = np.rint(np.clip(-conv.params["weight"] * f32(sw), -128, 127)).astype(np.int64)
    Bq = np.rint(np.clip(conv.params["bias"] * (f32(sx * sw) / f32(128)), -1024, 1016)).astype(np.int64)
    np.testing.assert_array_equal(conv(x), _conv_by_hand(Xp, Xn, Wq, Wn, Bq, sx * sw / sy, sy).astype(f32))


def test_gru_step_by_hand():
    """One step from h = 0 (docs/gru.md): y_a = ⌊clip(acc_a / G_a)⌋ for the zr and in arrays (the hn array
    sees h = 0: its output is ⌊bias / G⌋), n = tanh_lut[y_in + ⌊r·y_hn / 2^7⌋], h' = ⌊(ones - z)·n / 2^7⌋."""
    rng = np.random.default_rng(2)
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=32, scale_weight=64, scale_y=16,
                       rounding="floor", auto_scale_update_step=1)
    gru = wn.GRU(3, 4, config=q, rng=rng)
    x = rng.normal(size=(6, 1, 3)).astype(f32)
    gru.begin_epoch()
    gru.forward(x, train=True)
    rec = export_model(wn.Sequential(gru))[0][1]
    lo, off = -128, 128
    H = 4

    def codes(a):
        u = np.rint(x[:, 0] * f32(rec[a + "_scale_x"])).astype(np.int64)
        return np.clip(np.maximum(u, 0), 0, 255) - np.clip(np.maximum(-u, 0), 0, 255)

    def arr(a, inp):
        e = int(np.log2(rec[a + "_scale_y"] / (rec[a + "_scale_x"] * rec[a + "_scale_weight"])))
        acc = inp @ rec[a + "_weight"].astype(np.int64).T + rec[a + "_bias_npu"].astype(np.int64)
        return np.clip(np.floor(acc * 2.0 ** e), lo, 127).astype(np.int64)
    yzr = arr("zr", np.concatenate([codes("zr"), np.zeros((6, H), np.int64)], 1))
    yin = arr("in", codes("in"))
    yhn = arr("hn", np.zeros((6, H), np.int64))
    z, r = rec["lut_sigmoid"][yzr[:, :H] + off], rec["lut_sigmoid"][yzr[:, H:] + off]
    n = rec["lut_tanh"][np.clip(yin + np.floor(r * yhn / 128).astype(np.int64), lo, 127) + off]
    h1 = np.clip(np.floor((int(rec["scale_ones"]) - z) * n / 128), -128, 127)
    np.testing.assert_array_equal(gru(x)[:, 0] * 128, h1)


@pytest.mark.parametrize("kind", ["cnn", "gru"])
def test_training_the_file_and_every_artefact_follow_floor(tmp_path, kind):
    rng = np.random.default_rng(3)
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                       auto_scale_update_step=2, rounding="floor")
    if kind == "cnn":
        m = wn.Sequential(wn.Conv2d(1, 4, 3, padding=1, config=q, rng=rng), wn.ReLU(), wn.AvgPool2d(2, config=q),
                          wn.Conv2d(4, 4, 3, padding=1, config=q.replace(to_linear=True, x_quant_bits=10), rng=rng),
                          wn.Flatten(), wn.Linear(64, 3, config=q.replace(x_quant_bits=9), rng=rng))
        x = rng.normal(size=(16, 1, 8, 8)).astype(f32)
        y = rng.integers(0, 3, 16)
    else:
        m = wn.Sequential(wn.GRU(4, 6, config=q.replace(scale_x=64, scale_weight=64), rng=rng),
                          wn.Linear(6, 3, config=q, rng=rng))
        x = rng.normal(size=(16, 5, 4)).astype(f32)
        y = rng.integers(0, 3, (16, 5))
    d = wn.train.data.Dataset(x, y, x, y)
    wn.train.fit(m, d, optimizer=wn.optim.Adam(m, lr=0.01), epochs=2, batch_size=8, log=lambda s: None, progress=False)
    wn.save(m, tmp_path / "m.h5")
    back = wn.load(tmp_path / "m.h5")
    assert all(l.config.rounding == "floor" for _, l in wn.walk(back) if l.config is not None and
               l.config.use_quantization)
    recs = export_model(back)
    assert all(r.get("rounding", "floor") == "floor" for _, r in recs if "rounding" in r)
    want = back(x)
    np.testing.assert_array_equal(IntegerEngine(recs).run(x)[0], want)
    rounded = wn.train.with_config(back, {"rounding": "round"})
    assert not np.array_equal(rounded(x), want)  # the setting is live, not ignored
    ort = pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install "witnp[onnx]"')
    from witnp.handoff.onnx_export import onnx_model
    sess = ort.InferenceSession(onnx_model(recs, x.shape[1:]).SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(["y"], {"x": x})[0], want)


def test_the_c_reference_follows_floor(tmp_path):
    from .test_c_source import CC, check
    if CC is None:
        pytest.skip("no C compiler on this machine (cc/gcc)")
    rng = np.random.default_rng(4)
    q = wn.LayerConfig(use_quantization=True, handle_neg_in="PN", scale_x=16, scale_weight=16, scale_y=16,
                       auto_scale_update_step=2, rounding="floor")
    m = wn.Sequential(wn.Conv2d(1, 3, 3, padding=1, config=q, rng=rng), wn.ReLU(), wn.Flatten(),
                      wn.Linear(48, 4, config=q.replace(x_quant_bits=10), rng=rng))
    recs, _ = check(tmp_path, m, rng.normal(size=(5, 1, 4, 4)).astype(f32))  # compiled C == engine == model
    assert recs[0][1]["rounding"] == "floor" and ", 1);" in (tmp_path / "model.c").read_text()
    g = wn.Sequential(wn.GRU(3, 5, config=q.replace(scale_x=64, scale_weight=64), rng=rng),
                      wn.Linear(5, 2, config=q, rng=rng))
    recs, _ = check(tmp_path, g, rng.normal(size=(4, 6, 3)).astype(f32))
    assert recs[0][1]["rounding"] == "floor"


def test_rounding_is_checked():
    with pytest.raises(ValueError, match="rounding='ceil' is not allowed; expected 'round'"):
        wn.LayerConfig(rounding="ceil")
