"""Panoptic-part training data as torch Datasets: :class:`PartsFolderDataset` reads each image and label of a
folder on demand (real data: Cityscapes-Panoptic-Parts, PASCAL-Panoptic-Parts) with Mask2Former's random
scale / crop / flip; :class:`PanopticPartsDataset` holds small data (procedural scenes) in memory."""

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

    def label(self, i: int) -> np.ndarray:
        return self.labels[i]

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


def pair_folder(images_dir: str | Path, labels_dir: str | Path, limit: int | None = None) -> list[tuple[Path, Path]]:
    """``[(image_file, label_file), ...]``: ``labels_dir/**/*.tif`` paired with ``images_dir/**/<id>*`` by image id."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder, what in ((images_dir, "images"), (labels_dir, "labels")):
        if not folder.is_dir():
            raise DataError(f"{what} folder {folder} does not exist")
    label_files = sorted(p for p in labels_dir.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))[:limit]
    if not label_files:
        raise DataError(f"labels folder {labels_dir} holds no .tif label files")
    index = {_image_id(p): p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for lab in label_files:
        key = _image_id(lab)
        if key not in index:
            raise DataError(f"label file {lab} has no image named {key}.* under {images_dir}")
        pairs.append((index[key], lab))
    return pairs


class PartsFolderDataset(Dataset):
    """Images and labels of a folder read **on demand** (nothing is cached, so the memory of a worker is one
    decoded image, its label and its targets), with Mask2Former's training augmentation when ``train``:
    random scale in ``[min_scale, max_scale]`` (image bilinear, label nearest), random crop of ``crop``
    pixels (padded with void where the image is smaller) and horizontal flip with probability 0.5.

    The augmentation of item ``i`` is drawn from ``(seed, epoch, i)`` (call :meth:`set_epoch`), so it does
    not depend on the worker that loads it. Items are ``(image (3, H, W) float32 in [0, 1], Targets)``.
    """

    def __init__(self, images_dir: str | Path, labels_dir: str | Path, spec: EvalSpec, *, train: bool = False,
                 crop: int | None = None, min_scale: float = 0.5, max_scale: float = 2.0, flip: bool = True,
                 seed: int = 0, limit: int | None = None) -> None:
        self.pairs = pair_folder(images_dir, labels_dir, limit)
        self.names = [str(lab) for _, lab in self.pairs]
        self.spec, self.train, self.crop = spec, train, crop
        self.min_scale, self.max_scale, self.flip, self.seed, self.epoch = min_scale, max_scale, flip, seed, 0

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def image(self, i: int) -> np.ndarray:
        from PIL import Image

        path, lab = self.pairs[i]
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return img

    def label(self, i: int) -> np.ndarray:
        return read_gt(self.pairs[i][1])

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img, lab = self.image(i), self.label(i)
        if img.shape[:2] != lab.shape:
            raise DataError(f"{self.names[i]}: image size {img.shape[1]}x{img.shape[0]} differs from its label "
                            f"size {lab.shape[1]}x{lab.shape[0]}")
        return img, lab

    def augment(self, img: np.ndarray, lab: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        rng = np.random.default_rng([self.seed, self.epoch, i])
        scale = float(rng.uniform(self.min_scale, self.max_scale))
        h, w = lab.shape
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        lab = np.asarray(Image.fromarray(lab.astype(np.int32), mode="I").resize((nw, nh), Image.NEAREST)).astype(np.int32)
        if self.crop is not None:
            c = self.crop
            ph, pw = max(c - nh, 0), max(c - nw, 0)
            if ph or pw:   # pad: black image, void (uid 0) label
                img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
                lab = np.pad(lab, ((0, ph), (0, pw)))
            y = int(rng.integers(0, img.shape[0] - c + 1))
            x = int(rng.integers(0, img.shape[1] - c + 1))
            img, lab = img[y:y + c, x:x + c], lab[y:y + c, x:x + c]
        if self.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Targets]:
        img, lab = self.raw(i)
        if self.train:
            img, lab = self.augment(img, lab, i)
        x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
        return x, make_targets(lab, self.spec, self.names[i])


def _image_id(path: Path) -> str:
    stem = path.stem
    for suffix in ("_gtFinePanopticParts", "_leftImg8bit"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def collate(items: list[tuple[torch.Tensor, Targets]]) -> tuple[torch.Tensor, list[Targets]]:
    """DataLoader ``collate_fn``: stacked images (B, 3, H, W) and the list of per-image targets."""
    return torch.stack([x for x, _ in items]), [t for _, t in items]
