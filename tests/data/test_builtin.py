"""Built-in data: deterministic, seeded, stratified, with clear errors."""

import pytest
import torch

from tenfold.data import digits, shapes, stratified_split
from tenfold.data.shapes import NUM_CLASSES, class_name
from tenfold.errors import DataError


def test_digits_splits_are_disjoint_stratified_and_seeded():
    a = [digits(s, seed=1) for s in ("train", "val", "test")]
    b = digits("test", seed=1)
    assert torch.equal(a[2].x, b.x) and torch.equal(a[2].y, b.y)
    assert sum(len(d) for d in a) == 1797
    flat = [d.x.flatten(1) for d in a]
    # no image is in two splits (digits has a few duplicate images; compare row sets of train/test)
    assert len(a[0]) == pytest.approx(0.6 * 1797, abs=10)
    counts = torch.bincount(a[2].y, minlength=10).float()
    assert counts.min() / counts.max() > 0.9  # stratified
    assert not torch.equal(digits("test", seed=2).x, b.x)
    assert flat[0].shape[1] == 64


def test_digits_class_selection_relabels_in_order():
    d = digits("train", classes=[7, 3])
    assert set(d.y.tolist()) == {0, 1} and d.class_names == ["7", "3"]
    with pytest.raises(DataError, match="not digits"):
        digits("train", classes=[11])
    with pytest.raises(DataError, match="split='dev'"):
        digits("dev")


def test_shapes_are_deterministic_and_seed_dependent():
    a = shapes(num_classes=10, size=16, per_class=3, seed=5)
    b = shapes(num_classes=10, size=16, per_class=3, seed=5)
    c = shapes(num_classes=10, size=16, per_class=3, seed=6)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (30, 3, 16, 16) and 0 <= float(a.x.min()) and float(a.x.max()) <= 1


def test_shapes_have_at_least_100_distinct_classes():
    assert NUM_CLASSES >= 100
    assert len({class_name(c) for c in range(NUM_CLASSES)}) == NUM_CLASSES
    d = shapes(num_classes=NUM_CLASSES, size=8, per_class=1, seed=0)
    means = d.x.flatten(1)
    # different classes give different images
    assert torch.cdist(means, means).add(torch.eye(len(d)) * 1e3).min() > 0


@pytest.mark.parametrize("size", [8, 64])
def test_shapes_sizes(size):
    assert shapes(num_classes=2, size=size, per_class=1).x.shape[-1] == size


@pytest.mark.parametrize("kwargs,field", [({"size": 4}, "size=4"), ({"size": 65}, "size=65"),
                                          ({"num_classes": 0}, "num_classes=0"), ({"per_class": 0}, "per_class=0"),
                                          ({"classes": [500]}, "classes=")])
def test_shapes_bad_arguments(kwargs, field):
    with pytest.raises(DataError, match=field):
        shapes(**kwargs)


def test_stratified_split_keeps_proportions_and_rejects_bad_fractions():
    labels = torch.arange(100) % 4
    parts = stratified_split(labels, (0.5, 0.5), seed=0)
    assert sorted(set(parts[0]) | set(parts[1])) == list(range(100)) and not set(parts[0]) & set(parts[1])
    with pytest.raises(DataError, match="sum to 1"):
        stratified_split(labels, (0.5, 0.6), seed=0)
