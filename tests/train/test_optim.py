"""Optimizers: trajectories against the update rules written out by hand (float64), state round trips,
clipping and schedules; an optional comparison with torch (skipped without it)."""
import math

import numpy as np
import pytest

from witnp.train import optim

GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.2, 1.0]), np.array([0.1, 0.4, -2.0]),
         np.array([1.0, -0.5, 0.0])]
P0 = np.array([1.0, -2.0, 0.5])


def run(make):
    p = P0.astype(np.float32).copy()
    g = np.zeros_like(p)
    opt = make({"p": (p, g)})
    out = []
    for gr in GRADS:
        g[...] = gr
        opt.step()
        out.append(p.astype(np.float64).copy())
    return np.array(out), opt


def sgd_ref(lr, momentum=0.0, dampening=0.0, wd=0.0, nesterov=False):
    p, buf, out = P0.copy(), None, []
    for g in GRADS:
        d = g + wd * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        out.append(p.copy())
    return np.array(out)


def adam_ref(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    p, m, v, out = P0.copy(), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(GRADS, 1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
        out.append(p.copy())
    return np.array(out)


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3),
                                dict(momentum=0.8, nesterov=True), dict(weight_decay=0.1),
                                dict(momentum=0.9, weight_decay=0.05, nesterov=True)])
def test_sgd_trajectory(kw):
    got, _ = run(lambda p: optim.SGD(p, lr=0.1, **kw))
    want = sgd_ref(0.1, kw.get("momentum", 0), kw.get("dampening", 0), kw.get("weight_decay", 0),
                   kw.get("nesterov", False))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_sgd_first_step_by_hand():
    """momentum 0.9, lr 0.1: buf = g on the first step, so p1 = p0 - 0.1·g; then buf = 0.9·g1 + g2."""
    got, _ = run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9))
    np.testing.assert_allclose(got[0], [0.95, -1.9, 0.3], rtol=1e-6)
    np.testing.assert_allclose(got[1], [0.95 - 0.1 * (0.45 - 0.3), -1.9 - 0.1 * (-0.9 + 0.2), 0.3 - 0.1 * 2.8],
                               rtol=1e-6)


@pytest.mark.parametrize("cls, kw", [(optim.Adam, dict()), (optim.Adam, dict(weight_decay=0.1)),
                                     (optim.Adam, dict(betas=(0.5, 0.9), eps=1e-3)),
                                     (optim.AdamW, dict()), (optim.AdamW, dict(weight_decay=0.3))])
def test_adam_trajectories(cls, kw):
    got, _ = run(lambda p: cls(p, lr=0.01, **kw))
    b1, b2 = kw.get("betas", (0.9, 0.999))
    want = adam_ref(0.01, b1, b2, kw.get("eps", 1e-8), kw.get("weight_decay", 0.01 if cls is optim.AdamW else 0),
                    decoupled=cls is optim.AdamW)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_adam_first_step_is_lr_times_sign():
    got, _ = run(lambda p: optim.Adam(p, lr=0.01))
    np.testing.assert_allclose(got[0], P0 - 0.01 * np.sign(GRADS[0]), rtol=1e-5)


def test_state_dict_round_trip_continues_identically():
    p1, g1 = P0.astype(np.float32).copy(), np.zeros(3, np.float32)
    a = optim.Adam({"p": (p1, g1)}, lr=0.01)
    for gr in GRADS[:2]:
        g1[...] = gr
        a.step()
    p2, g2 = p1.copy(), np.zeros(3, np.float32)
    b = optim.Adam({"p": (p2, g2)}, lr=0.5)
    b.load_state_dict(a.state_dict())
    for gr in GRADS[2:]:
        g1[...] = gr
        g2[...] = gr
        a.step()
        b.step()
    np.testing.assert_array_equal(p1, p2)
    with pytest.raises(ValueError, match="state is for 'Adam'"):
        optim.SGD({"p": (p2, g2)}, lr=0.1).load_state_dict(a.state_dict())
    bad = a.state_dict()
    bad["state"]["q"] = bad["state"].pop("p")
    with pytest.raises(ValueError, match="unknown parameter 'q'"):
        b.load_state_dict(bad)


def test_clip_grad_norm():
    g = np.array([3.0, 4.0], np.float32)
    p = np.zeros(2, np.float32)
    assert optim.clip_grad_norm({"p": (p, g)}, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-5)
    assert optim.clip_grad_norm({"p": (p, g)}, 10.0) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-5)


def test_schedules():
    p, g = np.zeros(1, np.float32), np.zeros(1, np.float32)
    opt = optim.SGD({"p": (p, g)}, lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.5)
    assert [s.step() for _ in range(5)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    opt.lr = 1.0
    c = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = [c.step() for _ in range(4)]
    np.testing.assert_allclose(lrs, [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 5)])


def test_bad_arguments():
    p, g = np.zeros(2, np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="SGD: lr=0.0; expected a number > 0"):
        optim.SGD({"p": (p, g)}, lr=0.0)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        optim.SGD({"p": (p, g)}, lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="parameter 'p' must be float32"):
        optim.Adam({"p": (p.astype(np.float64), g)}, lr=0.1)


@pytest.mark.torch
def test_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    for name, kw in (("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
                     ("Adam", dict(lr=0.01, weight_decay=0.01)), ("AdamW", dict(lr=0.01, weight_decay=0.1))):
        tp = torch.tensor(P0, dtype=torch.float32, requires_grad=True)
        topt = getattr(torch.optim, name)([tp], **kw)
        got, _ = run(lambda p: getattr(optim, name)(p, **kw))
        for i, gr in enumerate(GRADS):
            tp.grad = torch.tensor(gr, dtype=torch.float32)
            topt.step()
            np.testing.assert_allclose(got[i], tp.detach().numpy(), rtol=1e-6, atol=1e-7)
