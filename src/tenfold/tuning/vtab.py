"""VTAB-1k from a local folder in the common converted layout (NOAH / V-PETL Bench), for the paper preset.

Layout: ``<root>/<task>/train800val200.txt`` and ``<root>/<task>/test.txt``; each line is
``<image path relative to <root>/<task>> <integer label>``. Images are resized to ``size`` and normalised
with the ImageNet mean and std (the NOAH convention; the VPT code feeds un-normalised pixels, one reason
published numbers differ, see the spec sec. 1). Nothing is downloaded: a missing file is a DataError.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from tenfold.errors import DataError

VTAB_TASKS = ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397",
              "patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy", "clevr_count", "clevr_dist",
              "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi", "smallnorb_ele")
TRAIN_LIST, TEST_LIST = "train800val200.txt", "test.txt"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_list(path: Path) -> list[tuple[str, int]]:
    """(relative image path, label) pairs of one list file; malformed lines name the file and line."""
    if not path.is_file():
        raise DataError(f"{path} does not exist: expected a VTAB-1k image list (put the converted VTAB-1k "
                        f"folder there, one folder per task with {TRAIN_LIST} and {TEST_LIST})")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected '<image path> <integer label>', got {line!r}")
        items.append((parts[0], int(parts[1])))
    if not items:
        raise DataError(f"{path} lists no images")
    return items


class ImageList(Dataset):
    """Images of one list file, loaded lazily, as normalised (3, size, size) tensors."""

    def __init__(self, folder: Path, items: list[tuple[str, int]], size: int = 224):
        self.folder, self.items, self.size = folder, items, size
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        rel, label = self.items[i]
        path = self.folder / rel
        try:
            image = Image.open(path).convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} cannot be read as an image: {exc}") from None
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std, label


def vtab_task(root: str | Path, name: str, size: int = 224) -> tuple[ImageList, ImageList, int]:
    """(train, test, num_classes) of VTAB-1k task ``name`` under ``root``."""
    folder = Path(root).expanduser() / name
    train, test = read_list(folder / TRAIN_LIST), read_list(folder / TEST_LIST)
    num_classes = max(label for _, label in train + test) + 1
    return ImageList(folder, train, size), ImageList(folder, test, size), num_classes
