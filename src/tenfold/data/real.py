"""Real-format datasets from a local root: CIFAR-10/100 python pickles, MNIST idx files and ImageFolder trees.

Nothing is downloaded. A missing dataset raises :class:`DataError` saying which files to put where.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from tenfold.data.base import ArrayDataset
from tenfold.errors import DataError

CIFAR_LAYOUT = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
         b"labels", b"label_names"),
    100: ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp"}


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"CIFAR file {path} is missing") from None
    except Exception as exc:
        raise DataError(f"CIFAR file {path} is not a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"CIFAR file {path} holds a {type(data).__name__}, expected a dict of arrays")
    return data


def cifar(root: str | Path, train: bool = True, num_classes: int = 10) -> ArrayDataset:
    """CIFAR-10 or CIFAR-100 from the official python pickles under ``root``.

    Expected layout: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` or
    ``root/cifar-100-python/{train, test, meta}`` (``root`` may also be that folder itself).
    Images are float tensors (N, 3, 32, 32) in [0, 1].
    """
    if num_classes not in CIFAR_LAYOUT:
        raise DataError(f"num_classes={num_classes} is invalid: expected 10 or 100")
    folder_name, train_files, test_files, meta_file, label_key, names_key = CIFAR_LAYOUT[num_classes]
    root = Path(root)
    folder = root if root.name == folder_name else root / folder_name
    files = train_files if train else test_files
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} not found: put the python-version files {', '.join(files)} in {folder} "
            f"(missing: {', '.join(missing)}); Tenfold never downloads data")
    xs, ys = [], []
    for name in files:
        batch = _unpickle(folder / name)
        if b"data" not in batch or label_key not in batch:
            raise DataError(f"CIFAR file {folder / name} lacks the 'data' or '{label_key.decode()}' entry")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"CIFAR file {folder / name}: 'data' has shape {data.shape}, expected (N, 3072)")
        labels = np.asarray(batch[label_key], dtype=np.int64)
        if len(labels) != len(data):
            raise DataError(f"CIFAR file {folder / name}: {len(data)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"CIFAR file {folder / name}: labels outside 0..{num_classes - 1}")
        xs.append(data)
        ys.append(labels)
    x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32).float() / 255.0
    y = torch.from_numpy(np.concatenate(ys))
    names = [str(i) for i in range(num_classes)]
    if (folder / meta_file).is_file():
        meta = _unpickle(folder / meta_file)
        if names_key in meta:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    return ArrayDataset(x, y, names)


def image_folder(root: str | Path, size: int | None = None) -> ArrayDataset:
    """An ImageFolder tree ``root/<class>/<image>`` loaded into memory (classes in sorted order).

    Images are converted to RGB and, when ``size`` is given, resized to ``size x size``; without
    ``size`` all images must have the same size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist: expected {root}/<class name>/<image files>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders: expected {root}/<class name>/<image files>")
    xs, ys = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {root / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB")
                    if size is not None:
                        im = im.resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"image {path} cannot be read ({exc})") from None
            if xs and arr.shape != xs[0].shape:
                raise DataError(f"image {path} has size {arr.shape[1]}x{arr.shape[0]} but earlier images are "
                                f"{xs[0].shape[1]}x{xs[0].shape[0]}; pass size= to resize")
            xs.append(arr)
            ys.append(label)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    return ArrayDataset(x, torch.tensor(ys), classes)


def _read_idx(path: Path) -> torch.Tensor:
    """One unsigned-byte idx file (LeCun's MNIST format), plain or ``.gz``, as a uint8 tensor of its shape."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            with (gzip.open if candidate.suffix == ".gz" else open)(candidate, "rb") as handle:
                raw = handle.read()
            break
    else:
        raise DataError(f"MNIST file {path}[.gz] is missing: put the four idx files in {path.parent}; "
                        "Tenfold never downloads data")
    if len(raw) < 8 or raw[2] != 8:
        raise DataError(f"MNIST file {path} is not an unsigned-byte idx file")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims))
    if data.size != int(np.prod(dims)):
        raise DataError(f"MNIST file {path}: {data.size} values, header says {dims}")
    return torch.from_numpy(data.copy()).view(*dims)


def mnist(root: str | Path, train: bool = True) -> ArrayDataset:
    """MNIST from the idx files under ``root`` (``train-images-idx3-ubyte`` etc., plain or gzipped), normalised
    with the usual mean 0.1307 and std 0.3081."""
    prefix = "train" if train else "t10k"
    x = _read_idx(Path(root) / f"{prefix}-images-idx3-ubyte").float().div(255).unsqueeze(1)
    y = _read_idx(Path(root) / f"{prefix}-labels-idx1-ubyte").long()
    return ArrayDataset((x - 0.1307) / 0.3081, y)
