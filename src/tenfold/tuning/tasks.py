"""The mini-VTAB tasks (spec sec. 7): few-shot transfer tasks for the small foundation models.

- ``digits-5-9``: the unseen digits 5-9, ``shots`` training images per class (VTAB-1k-like), tested on the rest.
- ``rotation``: 4-way rotation prediction (0/90/180/270 degrees) of digits 5-9 ("structured" task).
- ``inverted``: digits 5-9 with inverted intensities (1 - x, a domain shift).
- ``shapes``: 10 shape classes never seen in pre-training (rings, stars, hexagons, half-discs, ellipses
  in two colours and textures), 32 px, on the shapes foundation model.
Each seed draws its own training shots from the same pool of images; the test set is everything else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from tenfold.errors import require

TASKS = ("digits-5-9", "rotation", "inverted", "shapes")
SHAPE_CLASSES = [s * 20 + t * 4 + k for s in range(5, 10) for t, k in ((0, 0), (3, 2))]
SHAPES_TEST_PER_CLASS = 40


@dataclass
class Task:
    name: str
    foundation: str          # which foundation model ("digits" or "shapes")
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def test_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test


@dataclass
class DatasetTask:
    """A task whose splits are Datasets (VTAB-1k images read lazily from disk)."""

    name: str
    foundation: str
    train_data: object
    test_data: object
    num_classes: int


def _shots(y: torch.Tensor, shots: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``shots`` random examples per class, and of all the others."""
    train = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        require(len(idx) > shots, "shots", shots, f"fewer than the {len(idx)} examples of class {int(c)}")
        train.append(idx[torch.randperm(len(idx), generator=generator)[:shots]])
    train = torch.cat(train)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[train] = False
    return train, torch.nonzero(mask).flatten()


@functools.lru_cache(maxsize=2)
def _shape_pool(per_class: int):
    """The shapes task's images, drawn once (seed 2000); each seed picks its own training shots from them."""
    from tenfold.data import shapes

    return shapes(classes=SHAPE_CLASSES, size=32, per_class=per_class, seed=2000)


def _digits_5_9() -> tuple[torch.Tensor, torch.Tensor]:
    from tenfold.data.digits import load_digits_arrays

    x, y = load_digits_arrays()
    keep = y >= 5
    return x[keep], y[keep] - 5


def resize_images(x: torch.Tensor, img_size: int, in_chans: int) -> torch.Tensor:
    """Images (N, C, H, W) resized (bilinear) to ``img_size`` and grey images repeated to ``in_chans``
    channels (the usual way to feed grey images to an RGB backbone)."""
    require(x.shape[1] in (1, in_chans), "in_chans", in_chans, f"1 or the images' {x.shape[1]} channels")
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = torch.nn.functional.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return x.expand(-1, in_chans, -1, -1).contiguous() if x.shape[1] != in_chans else x


def on_foundation(task: Task, foundation: str, img_size: int, in_chans: int) -> Task:
    """``task`` for another foundation model: its images through :func:`resize_images`."""
    def adapt(x: torch.Tensor) -> torch.Tensor:
        return resize_images(x, img_size, in_chans)

    return Task(task.name, foundation, adapt(task.x_train), task.y_train, adapt(task.x_test), task.y_test,
                task.num_classes)


def make_task(name: str, seed: int, shots: int = 20) -> Task:
    """Task ``name`` with the training shots drawn from ``seed``."""
    require(name in TASKS, "task", name, f"one of {', '.join(TASKS)}")
    require(shots >= 1, "shots", shots, "at least 1 example per class")
    g = torch.Generator().manual_seed(10_000 + seed)
    if name == "shapes":
        data = _shape_pool(shots + SHAPES_TEST_PER_CLASS)
        tr, te = _shots(data.y, shots, g)
        return Task(name, "shapes", data.x[tr], data.y[tr], data.x[te], data.y[te], len(SHAPE_CLASSES))
    x, y = _digits_5_9()
    if name == "rotation":
        k = torch.randint(4, (len(y),), generator=g)
        x = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)])
        y = k
    elif name == "inverted":
        x = 1.0 - x
    tr, te = _shots(y, shots, g)
    return Task(name, "digits", x[tr], y[tr], x[te], y[te], int(y.max()) + 1)
