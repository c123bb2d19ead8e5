"""Matplotlib without a screen: figures are made with the Agg backend and saved as PNG.

Matplotlib is imported on the first figure, not with this module: the experiment modules import
:func:`new_figure`, and ``tenfold config NAME`` imports the experiment's module without drawing anything.
"""

from __future__ import annotations

import io
from pathlib import Path

from tenfold.io import atomic_write_bytes


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend (selected before pyplot is first imported)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] | None = None):
    """``fig, axes = new_figure(2)``: a figure sized for the report (5 x 3.5 inches per panel)."""
    size = size or (5.0 * ncols, 3.5 * nrows)
    return pyplot().subplots(nrows, ncols, figsize=size, squeeze=True)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def curves_figure(panels: dict[str, dict[str, list[list[float]]]], xlabel: str = "epoch",
                  ylabel: str = "training loss (epoch mean)", log_y: bool = True):
    """One panel per key of ``panels`` (e.g. a task); in each, one colour per label (e.g. a method) with
    every seed's curve thin and their mean thick, so that a budget at which training has converged (a flat
    end) shows at a glance. Returns the figure (save it with ``ctx.save_figure``)."""
    import numpy as np

    fig, axes = new_figure(len(panels))
    axes = np.atleast_1d(axes)
    for ax, (title, curves) in zip(axes, panels.items()):
        for i, (label, runs) in enumerate(curves.items()):
            runs = [r for r in runs if len(r)]
            if not runs:
                continue
            n = min(len(r) for r in runs)
            epochs = np.arange(1, n + 1)
            for r in runs:
                ax.plot(epochs, r[:n], c=f"C{i % 10}", lw=0.5, alpha=0.35)
            ax.plot(epochs, np.mean([r[:n] for r in runs], axis=0), c=f"C{i % 10}", lw=1.6, label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
        ax.legend(fontsize=7)
    return fig
