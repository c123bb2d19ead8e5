"""Metrics: a CSV log that survives crashes, NaN/inf detection, and torchmetrics helpers."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import torch

from tenfold.errors import ConvergenceError


def to_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().item()) if value.numel() != 1 else float(value.item())
    return float(value)


def check_finite(metrics: dict[str, float], where: str) -> None:
    """Raise :class:`ConvergenceError` naming the first non-finite metric (stops a run cleanly)."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            raise ConvergenceError(f"{key} became {value} at {where}; the run stopped (lower the learning rate?)")


def _key(row: dict[str, Any]) -> tuple:
    """A row as the CSV holds it (strings, empty cells dropped), for matching rows across a resume."""
    return tuple(sorted((k, str(v)) for k, v in row.items() if v not in (None, "")))


class MetricsLog:
    """Append rows to ``metrics.csv``; each row is flushed and fsynced, columns grow as needed.

    When new columns appear the file is rewritten atomically with the wider header, so the CSV is
    always readable by ``csv.DictReader`` even after a kill.

    With ``resume=True`` the rows already in the file are kept, and a row logged again that equals
    one of them (a deterministic step redone after a kill) is not written twice; stages drop their
    rows after their checkpoint with :meth:`truncate_after`. So ``metrics.csv`` never repeats a row.
    """

    def __init__(self, path: str | Path, enabled: bool = True, resume: bool = False) -> None:
        from collections import Counter

        self.path = Path(path)
        self.enabled = enabled
        self.fields: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self._replay: Counter = Counter()
        if self.enabled and self.path.is_file():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or [])
                self.rows = list(reader)
            if resume:
                self._replay = Counter(_key(r) for r in self.rows)

    def truncate_after(self, column: str, value: float, stage: str | None = None) -> None:
        """Drop rows of ``stage`` (all rows when None) whose ``column`` exceeds ``value``; used on
        resume so that no row is logged twice and other stages' rows are kept."""
        def drop(r: dict) -> bool:
            if stage is not None and r.get("stage") != stage:
                return False
            return r.get(column) not in (None, "") and float(r[column]) > value

        keep = [r for r in self.rows if not drop(r)]
        for r in self.rows:
            if drop(r) and self._replay[_key(r)] > 0:
                self._replay[_key(r)] -= 1
        if len(keep) != len(self.rows):
            self.rows = keep
            self._rewrite()

    def log(self, **row: Any) -> None:
        if not self.enabled:
            return
        clean = {k: (to_float(v) if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
        key = _key(clean)
        if self._replay[key] > 0:  # already in the file from before the resume
            self._replay[key] -= 1
            return
        self.rows.append(clean)
        new = [k for k in clean if k not in self.fields]
        if new or not self.path.is_file():
            self.fields.extend(new)
            self._rewrite()
            return
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow(clean)
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite(self) -> None:
        import io

        from tenfold.io import atomic_write_text

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


@torch.no_grad()
def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy (torchmetrics' multiclass accuracy, micro-averaged)."""
    from torchmetrics.functional.classification import multiclass_accuracy

    return float(multiclass_accuracy(logits, target, num_classes=logits.shape[-1], average="micro").item())
