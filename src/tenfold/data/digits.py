"""scikit-learn's handwritten digits (1,797 real 8x8 images, shipped with scikit-learn, offline)."""

from __future__ import annotations

import torch

from tenfold.data.base import ArrayDataset, stratified_split
from tenfold.errors import DataError

SPLITS = ("train", "val", "test")


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as float images in [0, 1] of shape (N, 1, 8, 8) and int labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    return x, y


def digits(split: str = "train", seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
           flatten: bool = False, classes: list[int] | None = None) -> ArrayDataset:
    """One split of the digits, stratified and seeded: ``digits("test", seed=0)``.

    ``classes`` keeps (and relabels to 0..k-1 in the given order) only those digits; ``flatten``
    gives 64-vectors instead of 1x8x8 images.
    """
    if split not in SPLITS:
        raise DataError(f"split={split!r} is invalid: expected one of {', '.join(SPLITS)}")
    x, y = load_digits_arrays()
    if flatten:
        x = x.flatten(1)
    parts = stratified_split(y, fractions, seed)
    idx = torch.as_tensor(parts[SPLITS.index(split)])
    data = ArrayDataset(x[idx], y[idx], [str(i) for i in range(10)])
    if classes is not None:
        bad = [c for c in classes if not 0 <= int(c) <= 9]
        if bad:
            raise DataError(f"classes={bad} are not digits: expected values in 0..9")
        data = data.select_classes(list(classes))
    return data
