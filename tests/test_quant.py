"""Scales, shift offsets, gain and the auto-scale observer (chip.md §2, §3, §5)."""
import pytest

from witnp.quant import ScaleObserver, gain, scale_from_max, shift_offset


@pytest.mark.parametrize("m, q, want", [(8.0, 8, 16.0), (9.1, 9, 16.0), (0.387, 8, 256.0), (1.0, 8, 128.0),
                                        (1.0000001, 8, 64.0), (4.895508, 8, 16.0), (300.0, 9, 0.5)])
def test_scale_from_max(m, q, want):
    assert scale_from_max(m, q) == want


@pytest.mark.parametrize("shift_num, sx, xb, want", [(0.6, 16, 8, 10.0), (2.5, 1, 8, 2.0), (447, 1, 8, 256.0),
                                                     (1.671, 256, 9, 428.0), (3.5, 1, 8, 4.0)])
def test_shift_offset_rounds_half_even_after_the_min(shift_num, sx, xb, want):
    assert shift_offset(shift_num, sx, xb) == want


def test_gain_rounds_half_to_even():
    assert gain(12, 40, 5) == 96
    assert gain(1, 1, 4) == 0
    assert gain(3, 1, 2) == 2 and gain(5, 1, 2) == 2


def make_observer(step=2, enabled=True):
    stats = {}
    obs = ScaleObserver("T", stats, ("x", "y"), {"x": 32.0, "y": 16.0}, {"x": 9, "y": 8}, step, enabled)
    return obs, stats


def test_observer_schedule():
    obs, stats = make_observer(step=2)
    qs = {"x": 9, "y": 8}
    assert float(stats["io_max_x"]) == 9 and float(stats["io_max_y"]) == 8
    obs.begin_epoch()
    assert float(stats["io_max_x"]) == 8
    assert obs.scales_for_forward(True, qs) == {"x": 32.0, "y": 16.0}  # first `step` use the old scales
    obs.after_train_forward({"x": 3.0, "y": 1.0}, qs)
    assert float(stats["io_max_x"]) == 3 and obs.scales["x"] == 32.0
    obs.after_train_forward({"x": 2.0, "y": 5.0}, qs)  # running max; counter reached step: derive
    assert float(stats["io_max_x"]) == 3 and float(stats["io_max_y"]) == 5
    assert obs.scales == {"x": scale_from_max(3, 9), "y": scale_from_max(5, 8)}
    obs.after_train_forward({"x": 100.0, "y": 100.0}, qs)  # past the step: not recorded
    assert float(stats["io_max_x"]) == 3
    obs.begin_epoch()
    assert obs.scales_for_forward(False, qs) == {"x": scale_from_max(8, 9), "y": scale_from_max(8, 8)}


def test_observer_disabled_only_resets():
    obs, stats = make_observer(enabled=False)
    obs.after_train_forward({"x": 3.0, "y": 1.0}, {"x": 9, "y": 8})
    assert float(stats["io_max_x"]) == 9 and obs.scales["x"] == 32.0
    obs.begin_epoch()
    assert float(stats["io_max_x"]) == 8 and obs.scales_for_forward(False, {"x": 9, "y": 8})["x"] == 32.0
