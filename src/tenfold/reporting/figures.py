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
