"""The analysis plots' one way to matplotlib (the optional extra ``witnp[plot]``).

A plot is a `matplotlib.figure.Figure` made directly, not through pyplot: pyplot would switch the caller's
backend (a user's notebook included) and keep every figure alive until closed. The PNG is written atomically.
"""
from __future__ import annotations

from ..handoff.atomic import atomic_write

__all__ = ["new_figure", "save_png"]


def new_figure(figsize=(6, 4), dpi: int = 120):
    """(figure, axes) for one plot; ValueError naming the extra when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError('--plot needs matplotlib, which is not installed: pip install "witnp[plot]"') from None
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots()


def save_png(fig, path) -> None:
    """Write `fig` to `path` as PNG, atomically (a kill leaves the old file or the new one)."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
