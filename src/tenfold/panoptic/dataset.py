"""Panoptic-part training data as a torch Dataset: images and GT uid labels from a folder in the
panoptic_parts layout, or from procedural scenes held in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tenfold.errors import DataError
from tenfold.panoptic.format import EvalSpec, read_gt
from tenfold.panoptic.targets import Targets, make_targets

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class PanopticPartsDataset(Dataset):
    """``(image (3, H, W) in [0, 1], Targets)`` pairs.

    ``images`` is a list of (H, W, 3) float arrays and ``labels`` a list of (H, W) uid arrays, with
    ``names`` used in error messages. Use :meth:`from_folder` for files on disk.
    """

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], spec: EvalSpec,
                 names: list[str] | None = None) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} label maps")
        self.names = names or [f"image {i}" for i in range(len(images))]
        for img, lab, name in zip(images, labels, self.names):
            if img.shape[:2] != lab.shape:
                raise DataError(f"{name}: image size {img.shape[1]}x{img.shape[0]} differs from its label size "
                                f"{lab.shape[1]}x{lab.shape[0]}")
        self.images = [torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1)
                       for im in images]
        self.labels = labels
        self.spec = spec
        self.targets = [make_targets(lab, spec, name) for lab, name in zip(labels, self.names)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Targets]:
        return self.images[i], self.targets[i]

    @classmethod
    def from_folder(cls, images_dir: str | Path, labels_dir: str | Path, spec: EvalSpec,
                    images_json: str | Path | None = None, limit: int | None = None) -> "PanopticPartsDataset":
        """Pair ``labels_dir/**/<id>*.tif`` with ``images_dir/**/<id>*.png|jpg`` by image id (the part of
        the label file name before a ``_gtFinePanopticParts`` suffix, as in Cityscapes-Panoptic-Parts)."""
        from PIL import Image

        images_dir, labels_dir = Path(images_dir), Path(labels_dir)
        for folder, what in ((images_dir, "images"), (labels_dir, "labels")):
            if not folder.is_dir():
                raise DataError(f"{what} folder {folder} does not exist")
        label_files = sorted(p for p in labels_dir.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
        if images_json is not None:
            wanted = [e["id"] for e in json.loads(Path(images_json).read_text())["images"]]
            label_files = [p for p in label_files if _image_id(p) in set(wanted)]
        if limit is not None:
            label_files = label_files[:limit]
        if not label_files:
            raise DataError(f"labels folder {labels_dir} holds no .tif label files")
        index = {}
        for p in images_dir.rglob("*"):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                index[_image_id(p)] = p
        images, labels, names = [], [], []
        for lab in label_files:
            key = _image_id(lab)
            if key not in index:
                raise DataError(f"label file {lab} has no image named {key}.* under {images_dir}")
            with Image.open(index[key]) as im:
                images.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(read_gt(lab))
            names.append(str(lab))
        return cls(images, labels, spec, names)


def _image_id(path: Path) -> str:
    stem = path.stem
    for suffix in ("_gtFinePanopticParts", "_leftImg8bit"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def collate(items: list[tuple[torch.Tensor, Targets]]) -> tuple[torch.Tensor, list[Targets]]:
    return torch.stack([x for x, _ in items]), [t for _, t in items]
