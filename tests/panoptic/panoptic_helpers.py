"""Shared builders for the panoptic tests: the procedural-scene eval specs and hand-made images."""

from __future__ import annotations

import numpy as np

from tenfold.data.panoptic_scenes import CAR, GROUND, write_spec_files
from tenfold.panoptic.format import EvalSpec


def specs(tmp_path):
    _, ev, ev_np = write_spec_files(tmp_path / "specs")
    return EvalSpec.load(ev), EvalSpec.load(ev_np), ev, ev_np


def car_grid(n: int = 8, size: int = 12) -> np.ndarray:
    """GT uids: ground everywhere, ``n`` cars in a row, each with 3 horizontal part stripes (pids 1, 2, 3)."""
    h, w = size + 8, n * (size + 4) + 4
    uids = np.full((h, w), GROUND, np.int32)
    for k in range(n):
        x0 = 4 + k * (size + 4)
        for p in range(3):
            y0 = 4 + p * size // 3
            uids[y0:y0 + size // 3, x0:x0 + size] = CAR * 100_000 + (k + 1) * 100 + p + 1
    return uids
