"""witnp's float layers and losses against torch (CPU), forward and backward: the torch semantics promised in
the README. Skipped without torch; CI installs it in a separate step (`.ci/run`) and runs `-m torch`."""
import numpy as np
import pytest

import witnp as wn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
F = torch.nn.functional


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


def _close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 2), (3, 1, 1, 3)])
def test_conv2d(stride, padding, dilation, groups):
    rng = np.random.default_rng(stride + 3 * padding)
    layer = wn.Conv2d(6, 12, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.normal(size=(2, 6, 11, 10)).astype(np.float32)
    y, ctx = layer.forward(x, train=True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(dy, ctx)
    tx, tw, tb = _t(x), _t(layer.params["weight"]), _t(layer.params["bias"])
    ty = F.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    _close(y, ty)
    _close(dx, tx.grad)
    _close(layer.grads["weight"], tw.grad)
    _close(layer.grads["bias"], tb.grad)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 2, 2, 3)])
def test_conv1d(stride, padding, dilation, groups):
    rng = np.random.default_rng(stride)
    layer = wn.Conv1d(6, 9, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.normal(size=(2, 6, 17)).astype(np.float32)
    y, ctx = layer.forward(x, train=True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(dy, ctx)
    tx, tw, tb = _t(x), _t(layer.params["weight"][:, :, 0, :]), _t(layer.params["bias"])
    ty = F.conv1d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    _close(y, ty)
    _close(dx, tx.grad)
    _close(layer.grads["weight"][:, :, 0, :], tw.grad)


@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups", [(2, 1, 1, 1, 1), (1, 0, 0, 2, 1),
                                                                             (3, 1, 2, 1, 2), (2, 1, 0, 1, 1)])
def test_conv_transpose2d(stride, padding, output_padding, dilation, groups):
    rng = np.random.default_rng(stride + 5 * dilation)
    layer = wn.ConvTranspose2d(4, 6, 4, stride=stride, padding=padding, output_padding=output_padding,
                               dilation=dilation, groups=groups)
    x = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    y, ctx = layer.forward(x, train=True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = layer.backward(dy, ctx)
    tx, tw, tb = _t(x), _t(layer.params["weight"]), _t(layer.params["bias"])
    ty = F.conv_transpose2d(tx, tw, tb, stride=stride, padding=padding, output_padding=output_padding,
                            dilation=dilation, groups=groups)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    _close(y, ty)
    _close(dx, tx.grad)
    _close(layer.grads["weight"], tw.grad)


def test_linear_and_gru():
    rng = np.random.default_rng(0)
    g = wn.GRU(5, 7)
    x = rng.normal(size=(3, 6, 5)).astype(np.float32)
    y, ctx = g.forward(x, train=True)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = g.backward(dy, ctx)
    tg = torch.nn.GRU(5, 7, batch_first=True).double()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(tg, n + "_l0").copy_(torch.tensor(g.params[n], dtype=torch.float64))
    tx = _t(x)
    ty, _ = tg(tx)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    _close(y, ty)
    _close(dx, tx.grad)
    _close(g.grads["weight_hh"], tg.weight_hh_l0.grad, 1e-4)
    lin = wn.Linear(5, 3)
    y, ctx = lin.forward(x, train=True)
    tl = F.linear(_t(x), _t(lin.params["weight"]), _t(lin.params["bias"]))
    _close(y, tl)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    loss, g = wn.CrossEntropyLoss(label_smoothing=smoothing)(logits, y)
    tl = _t(logits)
    tloss = F.cross_entropy(tl, torch.tensor(y), label_smoothing=smoothing)
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-5
    _close(g, tl.grad)
