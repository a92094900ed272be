"""GRU and GRUCell in float mode: torch's formulas (a per-step NumPy reference), gradients through time
against central differences in float64, and bad input."""
import numpy as np
import pytest

import witnp as wn

from ..conftest import central_diff


def sig(v):
    return 1 / (1 + np.exp(-v))


def gru_ref(x, h0, p):
    """torch.nn.GRU (batch first) in float64, step by step."""
    H = h0.shape[1]
    h, out = h0, []
    for t in range(x.shape[1]):
        gi = x[:, t] @ p["weight_ih"].T + p["bias_ih"]
        gh = h @ p["weight_hh"].T + p["bias_hh"]
        r = sig(gi[:, :H] + gh[:, :H])
        z = sig(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


def test_gru_forward_and_backward_through_time():
    rng = np.random.default_rng(0)
    gru = wn.GRU(3, 4, rng=rng)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    h0 = rng.normal(size=(2, 4)).astype(np.float32) * 0.5
    y, ctx = gru.forward((x, h0))
    p64 = {k: v.astype(np.float64) for k, v in gru.params.items()}
    x64, h64 = x.astype(np.float64), h0.astype(np.float64)
    np.testing.assert_allclose(y, gru_ref(x64, h64, p64), rtol=1e-5, atol=1e-6)
    gy = rng.normal(size=y.shape).astype(np.float32)
    dx, dh0 = gru.backward(gy, ctx)
    loss = lambda: float((gru_ref(x64, h64, p64) * gy).sum())  # noqa: E731
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-6), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dh0, central_diff(loss, h64, 1e-6), rtol=1e-4, atol=1e-5)
    for k in gru.params:
        np.testing.assert_allclose(gru.grads[k], central_diff(loss, p64[k], 1e-6), rtol=1e-4, atol=1e-5, err_msg=k)


def test_gru_cell_is_one_step_of_gru():
    rng = np.random.default_rng(1)
    cell = wn.GRUCell(3, 4, rng=rng)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    h = rng.normal(size=(2, 4)).astype(np.float32)
    y, ctx = cell.forward((x, h))
    p64 = {k: v.astype(np.float64) for k, v in cell.params.items()}
    np.testing.assert_allclose(y, gru_ref(x[:, None].astype(np.float64), h.astype(np.float64), p64)[:, 0],
                               rtol=1e-5, atol=1e-6)
    gy = rng.normal(size=y.shape).astype(np.float32)
    dx, dh = cell.backward(gy, ctx)
    loss = lambda: float((gru_ref(x64[:, None], h64, p64)[:, 0] * gy).sum())  # noqa: E731
    x64, h64 = x.astype(np.float64), h.astype(np.float64)
    np.testing.assert_allclose(dx, central_diff(loss, x64, 1e-6), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dh, central_diff(loss, h64, 1e-6), rtol=1e-4, atol=1e-5)


def test_torch_layout_and_no_bias():
    g = wn.GRU(3, 4, bias=False)
    assert g.params["weight_ih"].shape == (12, 3) and g.params["weight_hh"].shape == (12, 4)
    assert "bias_ih" not in g.params
    y = g(np.ones((1, 2, 3), np.float32))
    assert y.shape == (1, 2, 4)


class TestBadInput:
    def test_sequence_rank_and_input_size(self):
        with pytest.raises(ValueError, match=r"GRU: x has shape \(2, 3\); expected \(N, T, 3\) \(batch first\)"):
            wn.GRU(3, 4)(np.ones((2, 3), np.float32))
        with pytest.raises(ValueError, match=r"GRU: x has shape \(2, 5, 2\); expected \(N, T, 3\)"):
            wn.GRU(3, 4)(np.ones((2, 5, 2), np.float32))

    def test_hidden_state_shape(self):
        with pytest.raises(ValueError, match=r"GRU: h has shape \(2, 3\); expected \(2, 4\)"):
            wn.GRU(3, 4)((np.ones((2, 5, 3), np.float32), np.zeros((2, 3), np.float32)))
        with pytest.raises(ValueError, match=r"GRUCell: h has shape \(1, 4\); expected \(2, 4\)"):
            wn.GRUCell(3, 4)((np.ones((2, 3), np.float32), np.zeros((1, 4), np.float32)))
        with pytest.raises(TypeError, match=r"GRUCell: expected \(x, h\)"):
            wn.GRUCell(3, 4)(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("quant", [False, True])
def test_return_sequences_false_is_the_last_state(quant):
    """GRU(return_sequences=False): y = the sequence form's y[:, -1]; its gradients are the sequence form's
    with dy only on the last step."""
    cfg = wn.LayerConfig(use_quantization=quant, handle_neg_in="PN", use_auto_scale=False, scale_x=64,
                         scale_weight=128, scale_y=32)
    last = wn.GRU(3, 5, config=cfg, rng=np.random.default_rng(0), return_sequences=False)
    seq = wn.GRU(3, 5, config=cfg, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 6, 3)).astype(np.float32)
    y, c = last.forward(x, train=True)
    ys, cs = seq.forward(x, train=True)
    np.testing.assert_array_equal(y, ys[:, -1])
    dy = np.random.default_rng(2).normal(size=y.shape).astype(np.float32)
    dys = np.zeros_like(ys)
    dys[:, -1] = dy
    np.testing.assert_array_equal(last.backward(dy, c), seq.backward(dys, cs))
    for k in last.grads:
        np.testing.assert_array_equal(last.grads[k], seq.grads[k])
    with pytest.raises(ValueError, match="dy"):
        last.backward(dys, c)
    with pytest.raises(TypeError, match="return_sequences='no'"):
        wn.GRU(3, 5, return_sequences="no")
