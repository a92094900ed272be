"""Losses: values against float64 formulas, gradients against central differences, and bad input."""
import numpy as np
import pytest

import witnp as wn

from ..conftest import central_diff


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 5))
    t = np.array([0, 4, 2, 2])
    loss = wn.CrossEntropyLoss(label_smoothing=smoothing)

    def ref():
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        q = np.full(z.shape, smoothing / 5)
        q[np.arange(4), t] += 1 - smoothing
        return float(-(q * lp).sum() / 4)
    v, g = loss(z.astype(np.float32), t)
    assert v == pytest.approx(ref(), rel=1e-6)
    np.testing.assert_allclose(g, central_diff(ref, z, 1e-6), rtol=1e-5, atol=1e-7)


def test_mse():
    rng = np.random.default_rng(1)
    p, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    v, g = wn.MSELoss()(p.astype(np.float32), t)
    ref = lambda: float(((p - t) ** 2).mean())  # noqa: E731
    assert v == pytest.approx(ref(), rel=1e-6)
    np.testing.assert_allclose(g, central_diff(ref, p, 1e-6), rtol=1e-5, atol=1e-7)


def test_bad_input():
    ce = wn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="target has dtype float64; expected integer class labels"):
        ce(np.zeros((2, 3), np.float32), np.zeros(2))
    with pytest.raises(ValueError, match=r"target labels span \[0, 3\]; expected \[0, 2\]"):
        ce(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target has shape \(3,\); expected \(2,\)"):
        ce(np.zeros((2, 3), np.float32), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"MSELoss: target has shape \(2,\); expected the shape of pred \(3,\)"):
        wn.MSELoss()(np.zeros(3, np.float32), np.zeros(2))
    with pytest.raises(ValueError, match="label_smoothing=2"):
        wn.CrossEntropyLoss(label_smoothing=2)
