"""Variable-length sequences: batched by length and cropped, so every example is computed at its own length
(the GRU's last state is its own) and nothing past a length reaches a loss, a metric or a gradient."""
import numpy as np
import pytest

import witnp as wn
from witnp.train.data import Dataset, batches, load_npz


def _seqs(n=40, T=9, F=3, seed=0, frames=False):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, T + 1, n)
    x = rng.normal(size=(n, T, F)).astype(np.float32)
    for i, L in enumerate(lengths):
        x[i, L:] = 0.0  # padding
    if frames:
        y = (x[:, :, 0] > 0).astype(np.int64)
    else:
        y = np.array([int(x[i, :L, 0].sum() > 0) for i, L in enumerate(lengths)], np.int64)
    return x, y, lengths


def test_batches_hold_one_length_each_and_every_example_once():
    x, y, lengths = _seqs(frames=True)
    seen = []
    for xb, yb in batches(x, y, 4, np.random.default_rng(1), lengths=lengths):
        L = xb.shape[1]
        assert yb.shape == (len(xb), L) and len(xb) <= 4
        rows = [i for i in range(len(x)) if lengths[i] == L and any(np.array_equal(x[i, :L], r) for r in xb)]
        seen += rows[:len(xb)] if len(rows) == len(xb) else rows
    assert sorted(set(seen)) == list(range(len(x)))
    a = [xb.tobytes() for xb, _ in batches(x, y, 4, np.random.default_rng(1), lengths=lengths)]
    assert a == [xb.tobytes() for xb, _ in batches(x, y, 4, np.random.default_rng(1), lengths=lengths)]


def _gru_model(return_sequences=False):
    rng = np.random.default_rng(5)
    return wn.Sequential(wn.GRU(3, 6, return_sequences=return_sequences, rng=rng), wn.Linear(6, 2, rng=rng))


@pytest.mark.parametrize("quantized", [False, True])
def test_each_example_is_computed_at_its_own_length(quantized):
    x, y, lengths = _seqs()
    m = _gru_model()
    if quantized:
        m = wn.train.with_config(m, {"use_quantization": True, "handle_neg_in": "PN"})
        wn.train.calibrate(m, x, lengths=lengths)
    got = wn.train.evaluate(m, x, y, lengths=lengths, batch_size=8)
    alone = np.concatenate([m(x[i:i + 1, :L]) for i, L in enumerate(lengths)])
    want = wn.train.evaluate(_Fixed(alone), np.arange(len(x)), y)
    # quantized: the outputs are the same bits however the batches are cut (only the float64 mean of the
    # per-batch losses may round differently); float: batched sums may differ in the last place
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12 if quantized else 1e-6)
    assert (got["accuracy"], got["macro_f1"]) == (want["accuracy"], want["macro_f1"])
    padded = wn.train.evaluate(m, x, y)  # the padded run's last state is another one
    assert padded["loss"] != got["loss"]


class _Fixed:
    """A 'model' that returns precomputed outputs for index inputs."""

    def __init__(self, out):
        self.out = out

    def forward(self, idx, train=False, rng=None):
        return self.out[np.asarray(idx)], None


def test_what_lies_past_a_length_changes_nothing_in_training():
    x, y, lengths = _seqs(n=60, frames=True)
    other = x.copy()
    rng = np.random.default_rng(9)
    for i, L in enumerate(lengths):
        other[i, L:] = rng.normal(size=other[i, L:].shape) * 100  # garbage where the padding was
    yo = y.copy()
    for i, L in enumerate(lengths):
        yo[i, L:] = 1 - yo[i, L:]  # and other labels there

    def train(xx, yy):
        d = Dataset(xx[:40], yy[:40], xx[40:], yy[40:], x_val=xx[40:50], y_val=yy[40:50], lengths_train=lengths[:40],
                    lengths_test=lengths[40:], lengths_val=lengths[40:50])
        m = _gru_model(return_sequences=True)
        hist = wn.train.fit(m, d, optimizer=wn.optim.Adam(m, lr=0.01), epochs=2, batch_size=8, log=lambda s: None,
                            progress=False)
        return m, hist, wn.train.evaluate(m, d.x_test, d.y_test, lengths=d.lengths_test)
    m1, h1, e1 = train(x, y)
    m2, h2, e2 = train(other, yo)
    for (k, a), (_, b) in zip(m1.named_params(), m2.named_params(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in h1] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in h2]
    assert e1 == e2 and set(e1) == {"loss", "frame_accuracy", "frame_f1"}


def test_frame_losses_weigh_every_frame_once():
    x, y, lengths = _seqs(n=30, frames=True)
    m = _gru_model(return_sequences=True)
    got = wn.train.evaluate(m, x, y, lengths=lengths, batch_size=4)
    logits = np.concatenate([m(x[i:i + 1, :L])[0] for i, L in enumerate(lengths)])  # (sum L, 2)
    labels = np.concatenate([y[i, :L] for i, L in enumerate(lengths)])
    ref = wn.CrossEntropyLoss()(logits[None], labels[None])[0]
    assert got["loss"] == pytest.approx(ref, rel=1e-6)
    assert got["frame_accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))


def test_lengths_in_a_data_file(tmp_path):
    x, y, lengths = _seqs(n=20)
    np.savez(tmp_path / "v.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5], lengths_train=lengths,
             lengths_test=lengths[:5])
    d = load_npz(tmp_path / "v.npz")
    np.testing.assert_array_equal(d.lengths_train, lengths)
    v = wn.train.data.with_validation(d, 0.25, seed=0)
    assert len(v.lengths_train) == len(v.x_train) and len(v.lengths_val) == len(v.x_val)
    for i, row in enumerate(v.x_val):  # each validation example keeps its own length
        j = next(j for j in range(20) if np.array_equal(x[j], row))
        assert v.lengths_val[i] == lengths[j]
    for bad, match in [(dict(lengths_test=None), r"needs \['lengths_train', 'lengths_test'\]"),
                       (dict(lengths_train=np.zeros(20, np.int64)), "each in 1..9"),
                       (dict(lengths_train=lengths[:-1]), "one integer length per example"),
                       (dict(lengths_train=lengths.astype(np.float32)), "one integer length per example"),
                       (dict(time_axis=np.array(3)), "time_axis = 3")]:
        arrays = dict(x_train=x, y_train=y, x_test=x[:5], y_test=y[:5], lengths_train=lengths, lengths_test=lengths[:5])
        arrays.update({k: v for k, v in bad.items()})
        arrays = {k: v for k, v in arrays.items() if v is not None}
        np.savez(tmp_path / "b.npz", **arrays)
        with pytest.raises(ValueError, match=match):
            load_npz(tmp_path / "b.npz")
