"""Digital ops, normalization, pooling and shape layers: float forward against float64 formulas, backward
against central finite differences of those formulas (float64), the quantized straight-through rules stated
directly, and bad input."""
import math

import numpy as np
import pytest

import witnp as wn

from ..conftest import central_diff

erf = np.vectorize(math.erf)


def bn_ref(x, w, b, eps=1e-5):
    axes = tuple(i for i in range(x.ndim) if i != 1)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m, v = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w.reshape(shape) + b.reshape(shape)


def pool_ref(x, k, s, p, op):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf if op == "max" else 0.0)
    Ho, Wo = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    out = np.empty(x.shape[:2] + (Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = win.max(axis=(2, 3)) if op == "max" else win.mean(axis=(2, 3))
    return out


# name: (layer factory, float64 formula of (inputs, params), input shapes, positive inputs only)
UNARY = {
    "ReLU": (wn.ReLU, lambda x, p: np.maximum(x, 0), False),
    "Sigmoid": (wn.Sigmoid, lambda x, p: 1 / (1 + np.exp(-x)), False),
    "Tanh": (wn.Tanh, lambda x, p: np.tanh(x), False),
    "GELU": (wn.GELU, lambda x, p: 0.5 * x * (1 + erf(x / math.sqrt(2))), False),
    "PReLU": (lambda: wn.PReLU(3, 0.3), lambda x, p: np.where(x > 0, x, p["weight"].reshape(1, 3, 1, 1) * x), False),
    "Sqrt": (wn.Sqrt, lambda x, p: np.sqrt(x), True),
    "Mean": (lambda: wn.Mean(dim=(1, 3), keepdim=False), lambda x, p: x.mean(axis=(1, 3)), False),
    "BatchNorm2d": (lambda: wn.BatchNorm2d(3), lambda x, p: bn_ref(x, p["weight"], p["bias"]), False),
    "BatchNorm1d": (lambda: wn.BatchNorm1d(3), lambda x, p: bn_ref(x, p["weight"], p["bias"]), False),
    "MaxPool2d": (lambda: wn.MaxPool2d(2, stride=1, padding=1), lambda x, p: pool_ref(x, 2, 1, 1, "max"), False),
    "AvgPool2d": (lambda: wn.AvgPool2d(3, stride=2, padding=1), lambda x, p: pool_ref(x, 3, 2, 1, "avg"), False),
    "Flatten": (wn.Flatten, lambda x, p: x.reshape(x.shape[0], -1), False),
}
BINARY = {
    "Add": (wn.Add, lambda a, b: a + b),
    "Mul": (wn.Mul, lambda a, b: a * b),
    "Divide": (wn.Divide, lambda a, b: np.clip(a / b, -8, 8)),
    "Cat": (lambda: wn.Cat(dim=1), lambda a, b: np.concatenate([a, b], axis=1)),
}


def _input(pos, seed=0, shape=(2, 3, 4, 5)):
    x = np.random.default_rng(seed).normal(size=shape)
    if pos:
        x = np.abs(x) + 0.2
    x[np.abs(x) < 0.05] += 0.1  # keep away from kinks (relu, prelu, max ties)
    return x.astype(np.float32)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_float_forward_and_backward(name):
    make, ref, pos = UNARY[name]
    layer = make()
    if name.startswith("BatchNorm"):
        layer.params["weight"][...] = [0.5, 1.5, -1.0]
        layer.params["bias"][...] = [0.1, -0.2, 0.3]
    x = _input(pos, shape=(4, 3, 5) if name == "BatchNorm1d" else (2, 3, 4, 5))
    y, ctx = layer.forward(x, train=True)
    p64 = {k: v.astype(np.float64) for k, v in layer.params.items()}
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y, ref(x64, p64), rtol=1e-5, atol=1e-5)
    gy = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
    dx = layer.backward(gy, ctx)
    loss = lambda: float((ref(x64, p64) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-6), rtol=1e-4, atol=1e-4)
    for k in layer.params:
        np.testing.assert_allclose(layer.grads[k], central_diff(loss, p64[k], 1e-6), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_float_forward_and_backward(name):
    make, ref = BINARY[name]
    layer = make()
    a, b = _input(False, 2), _input(False, 3)
    y, ctx = layer.forward((a, b))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    np.testing.assert_allclose(y, ref(a64, b64), rtol=1e-5, atol=1e-5)
    gy = np.random.default_rng(4).normal(size=y.shape).astype(np.float32)
    da, db = layer.backward(gy, ctx)
    loss = lambda: float((ref(a64, b64) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(da, central_diff(loss, a64, 1e-6), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, central_diff(loss, b64, 1e-6), rtol=1e-4, atol=1e-4)


def qcfg(**kw):
    base = dict(use_quantization=True, use_auto_scale=False, scale_x=16, scale_y=32, scale_weight=64,
                scale_x_left=8, scale_x_right=4)
    base.update(kw)
    return wn.LayerConfig(**base)


def test_batchnorm_running_statistics_and_inference():
    bn = wn.BatchNorm2d(3, momentum=0.2, eps=1e-3)
    x = _input(False, 5)
    bn.forward(x, train=True)
    m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.stats["running_mean"], 0.2 * m, rtol=1e-5)
    np.testing.assert_allclose(bn.stats["running_var"], 0.8 + 0.2 * v, rtol=1e-5)
    assert int(bn.stats["num_batches_tracked"]) == 1
    y, ctx = bn.forward(x, train=False)
    want = (x - bn.stats["running_mean"].reshape(1, 3, 1, 1)) / np.sqrt(bn.stats["running_var"].reshape(1, 3, 1, 1)
                                                                        + 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    gy = np.ones_like(y)
    np.testing.assert_allclose(bn.backward(gy, ctx), gy / np.sqrt(bn.stats["running_var"].reshape(1, 3, 1, 1) + 1e-3),
                               rtol=1e-5)


class TestQuantizedStraightThrough:
    def test_unary_gradient_is_f_prime_at_the_code_masked_by_both_clips(self):
        t = wn.Tanh(config=qcfg())
        x = np.array([0.30, 9.0, -0.5], np.float32)  # 9·16 = 144 > 127: input clipped
        y, ctx = t.forward(x)
        dx = t.backward(np.ones(3, np.float32), ctx)
        v = np.rint(0.30 * 16) / 16
        np.testing.assert_allclose(dx[0], 1 - np.tanh(v) ** 2, rtol=1e-6)
        assert dx[1] == 0
        s = wn.Sigmoid(config=qcfg(scale_y=256))  # sigmoid·256 > 255 saturates U(8) near 1
        y, ctx = s.forward(np.array([6.0, 0.0], np.float32))
        dx = s.backward(np.ones(2, np.float32), ctx)
        assert y[0] == 255 / 256 and dx[0] == 0 and dx[1] > 0

    def test_sqrt_gradient_at_the_raw_input(self):
        s = wn.Sqrt(config=qcfg())
        x = np.array([2.0, -1.0, 0.0], np.float32)
        y, ctx = s.forward(x)
        np.testing.assert_allclose(y[0], np.rint(np.floor(np.sqrt(32 * 256)) * 32 / (16 * 4)) / 32)
        dx = s.backward(np.ones(3, np.float32), ctx)
        np.testing.assert_allclose(dx, [1 / (2 * np.sqrt(2.0)), 0, 0], rtol=1e-6)

    def test_prelu_gradient_uses_the_quantized_slope(self):
        p = wn.PReLU(1, 0.3, config=qcfg())
        y, ctx = p.forward(np.array([-1.0, 1.0], np.float32))
        dx = p.backward(np.ones(2, np.float32), ctx)
        np.testing.assert_allclose(dx, [np.rint(0.3 * 64) / 64, 1.0])
        np.testing.assert_allclose(p.grads["weight"], [-1.0])

    def test_mul_and_divide_masks(self):
        m = wn.Mul(config=qcfg())
        y, ctx = m.forward((np.array([1.0, 100.0], np.float32), np.array([2.0, 1.0], np.float32)))
        d1, d2 = m.backward(np.ones(2, np.float32), ctx)
        assert d1[0] == 2.0 and d2[0] == 1.0 and d1[1] == 0  # 100·8 clipped
        dv = wn.Divide(config=qcfg(scale_y=8))
        y, ctx = dv.forward((np.array([1.0, 1.0, 3.0], np.float32), np.array([0.0, 0.5, 0.25], np.float32)))
        np.testing.assert_array_equal(y, [8.0, 2.0, 8.0])  # x2 = 0 -> 8·sign(x1); 12 clipped to 8
        d1, d2 = dv.backward(np.ones(3, np.float32), ctx)
        assert d1[0] == 0 and d1[2] == 0 and d1[1] == 2.0 and d2[1] == -4.0


class TestContainersAndNames:
    def test_sequential_names_and_protocol(self):
        g = np.random.default_rng(0)  # fixed weights: the test must not depend on the global generator's state
        model = wn.Sequential(wn.Linear(4, 3, rng=g), wn.ReLU(), wn.Linear(3, 2, rng=g))
        assert list(model.params()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
        x = g.normal(size=(5, 4)).astype(np.float32)
        y, ctx = model.forward(x)
        assert y.shape == (5, 2)
        assert model.backward(np.ones_like(y), ctx).shape == x.shape
        assert model.grads()["0.weight"].any()
        model.zero_grad()
        assert not any(g.any() for g in model.grads().values())

    def test_nested_names_residual_and_branches(self):
        from collections import OrderedDict
        enc = wn.Sequential(OrderedDict(conv1=wn.Conv2d(2, 2, 3, padding=1), act=wn.ReLU()))
        model = wn.Sequential(OrderedDict(
            encoder=enc, res=wn.Residual(wn.Conv2d(2, 2, 1)),
            split=wn.Branches(wn.Conv2d(2, 1, 1), wn.Conv2d(2, 3, 1)), flat=wn.Flatten()))
        names = list(model.params())
        assert names[:2] == ["encoder.conv1.weight", "encoder.conv1.bias"]
        assert "res.body.weight" in names and "split.1.weight" in names
        x = np.random.default_rng(0).normal(size=(2, 2, 4, 4)).astype(np.float32)
        y, ctx = model.forward(x, train=True)
        assert y.shape == (2, 4 * 16)
        dx = model.backward(np.ones_like(y), ctx)
        assert dx.shape == x.shape

    def test_begin_epoch_reaches_every_layer(self):
        cfg = qcfg(use_auto_scale=True)
        model = wn.Sequential(wn.Linear(3, 3, config=cfg), wn.Residual(wn.Linear(3, 3, config=cfg)))
        for _, layer in wn.walk(model):
            for k in [k for k in layer.stats if k.startswith("io_max")]:
                layer.stats[k] = np.array(3.0, np.float32)
        model.begin_epoch()
        for _, layer in wn.walk(model):
            assert all(float(v) == 8.0 for k, v in layer.stats.items() if k.startswith("io_max"))


class TestBadInput:
    def test_two_input_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"Add: x1 has shape \(2, 3\) and x2 \(3, 2\); expected equal shapes"):
            wn.Add()((np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)))
        with pytest.raises(TypeError, match=r"Mul: expected a pair \(x1, x2\)"):
            wn.Mul()(np.ones(3, np.float32))
        with pytest.raises(ValueError, match=r"Cat: x2 has shape \(2, 3\), x1 \(3, 3\); expected equal shapes"):
            wn.Cat(dim=1)((np.ones((3, 3), np.float32), np.ones((2, 3), np.float32)))

    def test_batchnorm_channels(self):
        with pytest.raises(ValueError, match=r"BatchNorm2d: x has shape \(2, 4, 3, 3\); expected 4-D input with 3 "
                                             r"channels"):
            wn.BatchNorm2d(3)(np.ones((2, 4, 3, 3), np.float32))
        with pytest.raises(ValueError, match="BatchNorm1d: a training forward needs more than one value"):
            wn.BatchNorm1d(3).forward(np.ones((1, 3), np.float32), train=True)

    def test_unknown_reduction_dims(self):
        with pytest.raises(ValueError, match=r"Mean: dim=5 is not a dimension of x with shape \(2, 3\)"):
            wn.Mean(dim=5)(np.ones((2, 3), np.float32))
        with pytest.raises(ValueError, match=r"Mean: dim=\(1, -1\) repeats a dimension"):
            wn.Mean(dim=(1, -1))(np.ones((2, 3), np.float32))

    def test_prelu_channels_and_quantized_cat_arity(self):
        with pytest.raises(ValueError, match=r"PReLU: x has shape \(2, 4\); expected 3 channels"):
            wn.PReLU(3)(np.ones((2, 4), np.float32))
        with pytest.raises(ValueError, match="Cat: quantized Cat takes two inputs"):
            wn.Cat(config=qcfg())(tuple(np.ones((1, 2), np.float32) for _ in range(3)))
