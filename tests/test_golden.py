"""Golden vectors recorded from the vendor's witin_nn 0.1.3 (tests/golden, copied from ../shared/golden).

Quantized outputs and io_max must match exactly (max |diff| = 0); float outputs and all gradients to float32
summation order (golden README: ~1e-6 relative, 2e-5 of the largest magnitude here).
"""
import numpy as np
import pytest

import witnp as wn

from .conftest import Replay, golden_cases, load_golden

CFG_FIELDS = ["use_quantization", "use_auto_scale", "scale_x", "scale_y", "scale_weight", "x_quant_bits",
              "y_quant_bits", "bias_row_N", "handle_neg_in", "shift_num", "bias_d", "w_clip", "noise_level",
              "noise_model", "to_linear", "scale_x_left", "scale_x_right", "auto_scale_updata_step"]


def scalar(z, k, default=None):
    if k not in z.files:
        return default
    v = z[k]
    if v.dtype.kind in "US":
        s = str(v)
        return None if s == "None" else s
    return v.item() if v.ndim == 0 else v


def config_of(z):
    kw = {f: scalar(z, "cfg_" + f) for f in CFG_FIELDS if "cfg_" + f in z.files}
    for f in ("x_quant_bits", "y_quant_bits", "bias_row_N", "noise_level", "auto_scale_updata_step"):
        if f in kw:
            kw[f] = int(kw[f])
    kw.setdefault("use_auto_scale", False)  # golden README: off unless the case says otherwise
    return wn.LayerConfig(**kw)


def assert_close(got, want, what, exact):
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        tol = 2e-5 * max(1.0, float(np.abs(want).max()) if want.size else 1.0)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=what)


def build_linear(z):
    w = z["weight"]
    return wn.Linear(w.shape[1], w.shape[0], bias=bool(scalar(z, "cfg_bias", True)), config=config_of(z))


def geom(z, k, default):
    v = scalar(z, k, default)
    return tuple(int(t) for t in np.ravel(v)) if isinstance(v, np.ndarray) else int(v)


def build_conv(z, transposed):
    w = z["weight"]
    kw = dict(stride=geom(z, "cfg_stride", 1), padding=geom(z, "cfg_padding", 0),
              dilation=geom(z, "cfg_dilation", 1), groups=int(scalar(z, "cfg_groups", 1)),
              bias=bool(scalar(z, "cfg_bias", True)), config=config_of(z))
    g = kw["groups"]
    if transposed:
        return wn.ConvTranspose2d(w.shape[0], w.shape[1] * g, tuple(w.shape[2:]),
                                  output_padding=geom(z, "cfg_output_padding", 0), **kw)
    return wn.Conv2d(w.shape[1] * g, w.shape[0], tuple(w.shape[2:]), **kw)


def build_layer(name, z):
    if name.startswith(("linear_", "noise_linear_")):
        return build_linear(z)
    return build_conv(z, transposed=name.startswith("convT_"))


def set_params(layer, z):
    layer.params["weight"][...] = z["weight_before_forward"] if "weight_before_forward" in z.files else z["weight"]
    if "bias" in layer.params:
        layer.params["bias"][...] = z["bias"]


@pytest.mark.parametrize("name", golden_cases("linear_", "noise_linear_", "conv2d_", "convT_", "noise_conv2d_"))
def test_layer_case(name):
    z = load_golden(name)
    layer = build_layer(name, z)
    set_params(layer, z)
    quant = bool(scalar(z, "cfg_use_quantization", False))
    train = scalar(z, "mode", "train" if name.startswith("noise_") else "eval") == "train"
    rng = Replay([z[k] for k in ("E1", "E2", "E3") if k in z.files]) if "E1" in z.files else None
    if train:
        layer.begin_epoch()
    y, ctx = layer.forward(z["x"], train=train, rng=rng)
    assert_close(y, z["y"], "y", exact=quant)
    if rng is not None:
        assert not rng.arrays, "the layer drew less noise than the reference did"
    if quant:
        for k in ("io_max_x", "io_max_weight", "io_max_y"):
            assert_close(layer.stats[k], z[k], k, exact=True)
    if "weight_before_forward" in z.files:  # float-mode w_clip clamps the stored weight in place
        assert_close(layer.params["weight"], z["weight"], "weight after forward", exact=False)
    dx = layer.backward(z["gy"], ctx)
    assert_close(dx, z["gx"], "gx", exact=False)
    assert_close(layer.grads["weight"], z["gweight"], "gweight", exact=False)
    if "bias" in layer.params:
        assert_close(layer.grads["bias"], z["gbias"], "gbias", exact=False)


@pytest.mark.parametrize("name", golden_cases("auto_"))
def test_auto_scale_schedule(name):
    z = load_golden(name)
    layer = build_linear(z)
    set_params(layer, z)
    i, train = 0, True
    for step in map(str, z["sequence"]):
        if step == "train":
            layer.begin_epoch()
            train = True
        elif step == "eval":
            train = False
        else:
            assert str(z[f"mode_{i}"]) == ("train" if train else "eval")
            y, _ = layer.forward(z[f"x_{i}"], train=train)
            assert_close(y, z[f"y_{i}"], f"y_{i}", exact=True)
            io = [layer.stats["io_max_x"], layer.stats["io_max_weight"], layer.stats["io_max_y"]]
            assert_close(io, z[f"io_max_{i}"], f"io_max_{i}", exact=True)
            i += 1
    assert i == int(z["n_forward"])


def test_noise_statistics_match_the_vendor():
    """Per-element mean and std of y over 400 draws per level against the vendor's 400 (noise_stats_linear).

    Test: for each of the 32 outputs and each level, a two-sample z-test on the means,
    |m1 - m2| / sqrt((s1² + s2²)/n) < 5, and on the standard deviations, |s1 - s2| / sqrt((s1² + s2²)/(2n))
    < 5 (the large-sample standard error of a sample std is s/sqrt(2n)). Under the null each statistic is
    about N(0, 1): P(|Z| > 5) = 5.7e-7, so over the 2·32·9 = 576 noisy comparisons the false-alarm rate is
    below 3.3e-4 (Bonferroni). Level 0 must be noiseless: every draw equals the recorded first sample.
    """
    z = load_golden("noise_stats_linear")
    n = int(z["cfg_n_samples"])
    w = z["weight"]
    gen = np.random.default_rng(20261122)
    for level in map(int, z["levels"]):
        cfg = config_of(z).replace(use_quantization=True, use_auto_scale=False, noise_level=level)
        layer = wn.Linear(w.shape[1], w.shape[0], config=cfg)
        layer.params["weight"][...] = w
        layer.params["bias"][...] = z["bias"]
        # noise is drawn once per forward (one weight perturbation per call), so each sample is its own call
        ys = np.stack([layer.forward(z["x"], rng=gen)[0] for _ in range(n)])
        m, s = ys.mean(0), ys.std(0, ddof=1)
        mv, sv = z[f"y_mean_lvl{level}"], z[f"y_std_lvl{level}"]
        if level == 0:
            np.testing.assert_array_equal(ys[0], z["y_first_lvl0"])
            assert np.all(s == 0) and np.all(sv == 0)
            continue
        zm = np.abs(m - mv) / np.sqrt((s ** 2 + sv ** 2) / n)
        zs = np.abs(s - sv) / np.sqrt((s ** 2 + sv ** 2) / (2 * n))
        assert zm.max() < 5, f"level {level}: mean z-score {zm.max():.2f}"
        assert zs.max() < 5, f"level {level}: std z-score {zs.max():.2f}"


DIGITAL = {
    "gelu": ("GELU", {}, 1), "sigmoid": ("Sigmoid", {}, 1), "tanh": ("Tanh", {}, 1),
    "prelu": ("PReLU", {"num_parameters": 3, "init": 0.25}, 1), "sqrt": ("Sqrt", {}, 1),
    "mean": ("Mean", {"dim": -1, "keepdim": True}, 1), "batchnorm2d": ("BatchNorm2d", {"num_features": 3}, 1),
    "elementadd": ("Add", {}, 2), "elementmul": ("Mul", {}, 2), "elementdivide": ("Divide", {}, 2),
    "cat": ("Cat", {"dim": 1}, 2),
}


@pytest.mark.parametrize("name", golden_cases("digital_"))
def test_digital_case(name):
    z = load_golden(name)
    op, tag = name[len("digital_"):].rsplit("_", 1)
    cls, kw, nin = DIGITAL[op]
    layer = getattr(wn, cls)(config=config_of(z), **kw)
    for k in ("weight", "bias"):
        if k in z.files and k in layer.params:
            layer.params[k][...] = z[k]
    x = z["x"] if nin == 1 else (z["x1"], z["x2"])
    y, ctx = layer.forward(x, train=(op == "batchnorm2d"))
    assert_close(y, z["y"], "y", exact=(tag == "q"))
    d = layer.backward(z["gy"], ctx)
    for k, got in ([("gx", d)] if nin == 1 else [("gx1", d[0]), ("gx2", d[1])]):
        assert_close(got, z[k], k, exact=False)
    for k in ("weight", "bias"):
        if "g" + k in z.files and k in layer.grads:
            assert_close(layer.grads[k], z["g" + k], "g" + k, exact=False)
    for k in ("running_mean", "running_var"):
        if "buf_" + k in z.files:
            assert_close(layer.stats[k], z["buf_" + k], k, exact=False)
