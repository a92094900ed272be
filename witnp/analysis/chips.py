"""Chips, not reads: how a quantized model scores over many simulated chips.

witnp's chip model (beside the vendor's NORMAL noise, which draws anew on every forward): a programmed chip's
analog arrays are wrong by a fixed amount that stays for all its inferences. Chip c draws its errors once,
with the same NORMAL statistics at the model's noise level, from its own seed (CHIP_SEED + c), and keeps them:
every forward of chip c replays the same draws (`witnp.noise.ChipSource`, which NAT's noise_mode="chip" also
uses). The errors are those of every array's weights
and bias rows (chip.md §6). With read_noise r > 0, every read adds fresh noise at r times that level on top
(each chip's read generator is seeded from its seed too); with r = 0 nothing varies between reads. Assumes, as
NORMAL does, independent errors per array cell; a chip's errors do not drift. The error statistics are the
layers' noise model: a model registered with `witnp.register_noise_model` and named in LayerConfig.noise_model
is used for programming (and read) errors alike.

`chip_metrics` evaluates the model on every chip; `summary` gives mean, std, 5th percentile and worst of a
metric over the chips.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..noise import ChipSource
from ..train.loop import evaluate, with_config

__all__ = ["CHIP_SEED", "ChipSource", "chip_metrics", "summary", "write_chip_plot"]

CHIP_SEED = 2000
"""Chip c draws from np.random.default_rng(CHIP_SEED + c) (apart from the noise seeds of noisy reads)."""


def chip_metrics(model, x, y, chips: int, noise_level: Optional[int] = None, batch_size: int = 256,
                 read_noise: float = 0.0, lengths=None, time_axis: int = 1) -> List[dict]:
    """The quantized model's metrics (`witnp.train.evaluate`) on each of `chips` simulated chips, at
    noise_level (default: the model's own, else 4). Each chip keeps one draw over all its batches; read_noise
    r adds fresh draws at r times that level on every forward (`ChipSource`). lengths: variable-length
    sequences (`witnp.train.evaluate`)."""
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise ValueError(f"chip_metrics: chips={chips!r}; expected a positive integer")
    ChipSource.check_read_noise(read_noise)  # before any work
    layers = [l for l in _leaves(model) if l.config is not None]
    if not any(l.config.use_quantization for l in layers):
        raise ValueError("chip_metrics: a float model has no analog arrays to program; use a QAT or NAT model")
    level = noise_level if noise_level is not None else (max(l.config.noise_level for l in layers) or 4)
    m = with_config(model, {"noise_level": int(level)})
    out = []
    for c in range(chips):
        src = ChipSource(CHIP_SEED + c, read_noise)
        out.append(evaluate(_Replaying(m, src), x, y, batch_size=batch_size, lengths=lengths, time_axis=time_axis))
    return out


class _Replaying:
    """The model with every forward given the chip's replayed draws."""

    def __init__(self, model, src: ChipSource):
        self.model, self.src = model, src

    def forward(self, x, train=False, rng=None):
        return self.model.forward(x, train=train, rng=self.src.begin_forward())


def _leaves(model):
    from ..layers.container import walk
    return [l for _, l in walk(model)]


def summary(values, higher_is_better: bool = True) -> Dict[str, float]:
    """mean, std, the bad tail (p5, the 5th percentile, when higher is better; else p95) and the worst chip of
    per-chip values."""
    v = np.asarray(values, np.float64)
    tail = ("p5", 5) if higher_is_better else ("p95", 95)
    return {"mean": float(v.mean()), "std": float(v.std()), tail[0]: float(np.percentile(v, tail[1])),
            "worst": float(v.min() if higher_is_better else v.max()), "chips": int(v.size)}


def write_chip_plot(path, values, metric: str = "accuracy", label: str = "") -> None:
    """A PNG histogram of a metric over chips, with the mean and the bad tail (5th percentile) marked. Needs
    matplotlib (``pip install "witnp[plot]"``)."""
    from .plot import new_figure, save_png
    v = np.asarray(values, np.float64)
    s = summary(v, higher_is_better=metric != "loss")
    fig, ax = new_figure()
    ax.hist(v, bins=min(30, max(5, v.size // 3)), color="#4c72b0", alpha=0.85)
    ax.axvline(s["mean"], color="k", label=f"mean {s['mean']:.4f}")
    tail = "p5" if "p5" in s else "p95"
    ax.axvline(s[tail], color="#c44e52", linestyle="--", label=f"{tail} {s[tail]:.4f}")
    ax.set_xlabel(f"test {metric} per chip")
    ax.set_ylabel("chips")
    ax.set_title(f"{label} over {v.size} simulated chips".strip())
    ax.legend()
    save_png(fig, path)
