"""A tensor-backed dataset and seeded stratified splits shared by every built-in dataset."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from tenfold.errors import DataError


class ArrayDataset(Dataset):
    """``(x[i], y[i])`` pairs held in memory, with an optional per-item transform.

    ``class_names`` gives a name per label; ``subset(idx)`` and ``select_classes`` keep it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, class_names: list[str] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if len(x) != len(y):
            raise DataError(f"inputs ({len(x)}) and labels ({len(y)}) have different lengths")
        self.x, self.y = x, y.long()
        self.class_names = class_names or [str(i) for i in range(int(self.y.max()) + 1 if len(y) else 0)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i]
        return (self.transform(x) if self.transform else x), self.y[i]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx: torch.Tensor | np.ndarray | list[int]) -> "ArrayDataset":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return ArrayDataset(self.x[idx], self.y[idx], self.class_names, self.transform)

    def select_classes(self, classes: list[int], relabel: bool = True) -> "ArrayDataset":
        """Keep only ``classes``; with ``relabel`` they become 0..len(classes)-1 in the given order."""
        classes = [int(c) for c in classes]
        mask = torch.zeros(len(self.y), dtype=torch.bool)
        for c in classes:
            mask |= self.y == c
        x, y = self.x[mask], self.y[mask]
        names = self.class_names
        if relabel:
            lut = torch.full((max(int(self.y.max()) + 1, max(classes) + 1),), -1, dtype=torch.long)
            lut[torch.tensor(classes)] = torch.arange(len(classes))
            y = lut[y]
            names = [self.class_names[c] for c in classes]
        return ArrayDataset(x, y, names, self.transform)


def stratified_split(labels: torch.Tensor | np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split indices into parts with the given fractions, class by class, seeded.

    Every class is divided in the same proportions, so each part keeps the class balance.
    """
    labels = np.asarray(labels)
    if not np.isclose(sum(fractions), 1.0) or any(f < 0 for f in fractions):
        raise DataError(f"split fractions {fractions} must be non-negative and sum to 1")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * len(idx)).astype(int)
        for k in range(len(fractions)):
            parts[k].extend(idx[bounds[k]:bounds[k + 1]].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
