"""fit's callbacks: a user's own sees every epoch and can stop the run; its state rides in the checkpoint, so
an interrupted and resumed fit ends where an uninterrupted one does, early stopping included."""
import numpy as np
import pytest

import witnp as wn
from witnp.train.callbacks import Callback

from .test_train import QAT, mlp, small_data, train


class Recorder(Callback):
    """Counts epochs and batches (state kept across a resume) and stops when validation accuracy passes a bar."""

    def __init__(self, stop_at=None):
        self.epochs, self.batches, self.stop_at, self.rows = 0, 0, stop_at, []

    def on_epoch_end(self, run, row):
        self.epochs += 1
        self.rows.append(row)
        if self.stop_at is not None and row["val_accuracy"] >= self.stop_at:
            run.stop = True

    def on_batch_end(self, run, batch, loss):
        self.batches += 1

    def state(self):
        return {"epochs": self.epochs, "batches": self.batches}

    def load_state(self, state):
        self.epochs, self.batches = state["epochs"], state["batches"]


def test_a_user_callback_sees_every_epoch_and_can_stop_the_run():
    rec = Recorder()
    h = train(mlp(0), small_data(), epochs=3, callbacks=[rec])
    assert rec.epochs == 3 and rec.rows == h and rec.batches == 3 * 8  # 256 examples in batches of 32
    stopper = Recorder(stop_at=0.0)
    h = train(mlp(0), small_data(), epochs=5, callbacks=[stopper])
    assert len(h) == 1 and stopper.epochs == 1


@pytest.mark.parametrize("stop_after", [2, 3])
def test_callback_state_and_early_stopping_survive_a_resume(tmp_path, stop_after):
    """128 examples, patience 1: the uninterrupted run stops early after epoch 3. Interrupted after 2 epochs
    the resumed run trains the third and stops; interrupted after the third (it had already stopped), the
    resumed run trains nothing. Either way: the same history, weights and callback counts."""
    cfg = wn.LayerConfig(**QAT, noise_level=2)
    d = small_data(n_train=128, n_test=64)
    full_rec = Recorder()
    full = train(mlp(0, cfg), d, epochs=40, patience=1, callbacks=[full_rec])
    assert len(full) == 3  # it stopped early
    ck = str(tmp_path / "ck.h5")
    first = train(mlp(0, cfg), d, epochs=40, patience=1, checkpoint=ck, stop_after=stop_after, callbacks=[Recorder()])
    assert len(first) == stop_after
    again = Recorder()
    m = mlp(1, cfg)  # other initial weights: the checkpoint's must win
    rest = train(m, d, epochs=40, patience=1, checkpoint=ck, resume=True, callbacks=[again])
    assert [r["val_loss"] for r in rest] == [r["val_loss"] for r in full]
    assert again.epochs == full_rec.epochs and again.batches == full_rec.batches  # counted across the resume
    ref = mlp(0, cfg)
    train(ref, d, epochs=40, patience=1)
    for (k, a), (_, b) in zip(ref.named_params(), m.named_params(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_only_callbacks_are_taken():
    with pytest.raises(TypeError, match="expected witnp.train.callbacks.Callback instances"):
        train(mlp(0), small_data(), epochs=1, callbacks=[print])
