"""The FSCIL benchmarks in their real formats, from local folders, with the CEC session lists.

Each loader returns a :class:`FSCILBenchmark`: the training and test sets (labels = the benchmark's
class ids), the session plan (base classes, then the novel classes of each session in order) and, per
session, the training-set indices it uses. The few-shot sessions come from the CEC lists carried in
``tenfold/data/cec`` (see its SOURCE.md) or from ``index_dir`` (files ``session_<t>.txt`` in the same
format; ``session_1.txt`` there is used when present, else the base session is every training image
of the base classes, which is what CEC's ``session_1.txt`` lists).

- :func:`cifar100_fscil`: ``root/cifar-100-python/{train,test}`` (python pickles); 60 base classes
  (fine labels 0-59), 8 sessions of 5-way 5-shot.
- :func:`mini_imagenet_fscil`: ``root/split/{train,test}.csv`` (``filename,label`` with a header line) and
  ``root/images/<filename>``; classes in their order of first appearance in ``train.csv`` (the sorted
  wnids for the real files); 60 base classes, 8 sessions of 5-way 5-shot; images 84 px.
- :func:`cub200_fscil`: ``root/{images.txt, train_test_split.txt, image_class_labels.txt}`` and
  ``root/images/<path>`` (CUB_200_2011 as distributed); class ``k`` of the files is id ``k - 1``; 100 base
  classes, 10 sessions of 10-way 5-shot; images 224 px.

Images are loaded once with the official test transform (resize the shorter side, centre crop) into
float tensors in [0, 1]; training-time augmentation happens on tensors (``base.augment``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tenfold.data.base import ArrayDataset
from tenfold.data.fewshot import SessionPlan
from tenfold.errors import DataError

CEC_DIR = Path(__file__).with_name("cec")


@dataclass
class FSCILBenchmark:
    train: ArrayDataset
    test: ArrayDataset
    plan: SessionPlan
    indices: list[torch.Tensor]


def _plan(num_classes: int, base: int, ways: int) -> SessionPlan:
    groups = tuple(tuple(range(base + i * ways, base + (i + 1) * ways)) for i in range((num_classes - base) // ways))
    return SessionPlan(tuple(range(base)), groups)


def cec_lists(name: str, sessions: int, index_dir: str | Path | None = None) -> list[list]:
    """Lines of ``session_2.txt`` .. ``session_<sessions + 1>.txt`` (plus ``session_1.txt`` first when
    ``index_dir`` has one, else ``None`` first): from ``index_dir`` or the carried CEC lists ``name``."""
    folder = Path(index_dir) if index_dir is not None else CEC_DIR / name
    first = folder / "session_1.txt"
    lists: list = [_lines(first) if index_dir is not None and first.is_file() else None]
    for t in range(2, sessions + 2):
        lists.append(_lines(folder / f"session_{t}.txt"))
    return lists


def _lines(path: Path) -> list:
    if not path.is_file():
        raise DataError(f"session index file {path} does not exist")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"session index file {path} is empty")
    return [int(ln) for ln in lines] if all(ln.isdigit() for ln in lines) else lines


def _resolve(lists: list, lookup, where: str, base_idx: torch.Tensor) -> list[torch.Tensor]:
    out = [base_idx if lists[0] is None else torch.tensor([lookup(e, where) for e in lists[0]])]
    for entries in lists[1:]:
        out.append(torch.tensor([lookup(e, where) for e in entries], dtype=torch.long))
    return out


def _load_image(path: Path, size: int, resize: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = resize / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {path} cannot be read ({exc})") from None


def _images(paths: list[Path], labels: list[int], size: int, resize: int, names: list[str]) -> ArrayDataset:
    if not paths:
        raise DataError("no images listed")
    x = torch.from_numpy(np.stack([_load_image(p, size, resize) for p in paths])).permute(0, 3, 1, 2)
    return ArrayDataset(x.float() / 255.0, torch.tensor(labels), names)


def cifar100_fscil(root: str | Path, index_dir: str | Path | None = None) -> FSCILBenchmark:
    """CIFAR-100 with the CEC sessions: base = fine labels 0-59, then 8 sessions of 5 classes (5 shots)."""
    from tenfold.data.real import cifar

    train, test = cifar(root, train=True, num_classes=100), cifar(root, train=False, num_classes=100)
    lists = cec_lists("cifar100", 8, index_dir)

    def lookup(e, where):
        if not isinstance(e, int) or not 0 <= e < len(train.y):
            raise DataError(f"{where}: entry {e!r} is not an index into the {len(train.y)} CIFAR-100 training images")
        return e

    base_idx = torch.nonzero(train.y < 60).flatten()
    return FSCILBenchmark(train, test, _plan(100, 60, 5), _resolve(lists, lookup, "CIFAR-100 session list", base_idx))


def _read_csv(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(f"miniImageNet split file {path} does not exist: expected split/train.csv and "
                        "split/test.csv (filename,label with a header line) and images/<filename>")
    rows = []
    for n, line in enumerate(path.read_text().splitlines()[1:], start=2):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        if len(parts) != 2:
            raise DataError(f"{path}, line {n}: expected 'filename,label', got {line!r}")
        rows.append((parts[0], parts[1]))
    return rows


def mini_imagenet_fscil(root: str | Path, size: int = 84, index_dir: str | Path | None = None) -> FSCILBenchmark:
    """miniImageNet (the CEC/NC-FSCIL layout) with the CEC sessions: 60 base classes, 8 x 5-way 5-shot."""
    root = Path(root)
    train_rows, test_rows = _read_csv(root / "split" / "train.csv"), _read_csv(root / "split" / "test.csv")
    classes: list[str] = list(dict.fromkeys(lbl for _, lbl in train_rows))
    if len(classes) != 100:
        raise DataError(f"{root / 'split' / 'train.csv'} names {len(classes)} classes; miniImageNet FSCIL needs 100")
    cid = {c: i for i, c in enumerate(classes)}
    stray = sorted({lbl for _, lbl in test_rows} - set(cid))
    if stray:
        raise DataError(f"{root / 'split' / 'test.csv'} names classes not in train.csv, e.g. {stray[0]}")
    resize = int(size * 1.15)
    train = _images([root / "images" / f for f, _ in train_rows], [cid[c] for _, c in train_rows], size, resize,
                    classes)
    test = _images([root / "images" / f for f, _ in test_rows], [cid[c] for _, c in test_rows], size, resize, classes)
    pos = {f: i for i, (f, _) in enumerate(train_rows)}

    def lookup(e, where):
        name = str(e).rsplit("/", 1)[-1]
        if name not in pos:
            raise DataError(f"{where}: image {name} is not in {root / 'split' / 'train.csv'}")
        return pos[name]

    base_idx = torch.nonzero(train.y < 60).flatten()
    return FSCILBenchmark(train, test, _plan(100, 60, 5),
                          _resolve(cec_lists("mini_imagenet", 8, index_dir), lookup, "miniImageNet session list",
                                   base_idx))


def _id_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"CUB-200-2011 file {path} does not exist: expected images.txt, train_test_split.txt, "
                        "image_class_labels.txt and images/ under the root")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{path}, line {n}: expected '<image id> <value>', got {line!r}")
            out[parts[0]] = parts[1]
    return out


def cub200_fscil(root: str | Path, size: int = 224, index_dir: str | Path | None = None) -> FSCILBenchmark:
    """CUB-200-2011 with the CEC sessions: 100 base classes (ids 1-100), then 10 sessions of 10-way 5-shot."""
    root = Path(root)
    images, split = _id_file(root / "images.txt"), _id_file(root / "train_test_split.txt")
    labels = _id_file(root / "image_class_labels.txt")
    missing = sorted(set(images) - set(split) | set(images) - set(labels))
    if missing:
        raise DataError(f"CUB image id {missing[0]} of images.txt has no split or class label")
    ids = sorted(images, key=int)
    names = sorted({images[i].split("/")[0] for i in ids}, key=lambda s: int(s.split(".")[0]) if s[:3].isdigit() else 0)
    train_ids = [i for i in ids if split[i] == "1"]
    test_ids = [i for i in ids if split[i] != "1"]
    resize = round(size * 256 / 224)
    train = _images([root / "images" / images[i] for i in train_ids], [int(labels[i]) - 1 for i in train_ids],
                    size, resize, names)
    test = _images([root / "images" / images[i] for i in test_ids], [int(labels[i]) - 1 for i in test_ids],
                   size, resize, names)
    if int(train.y.max()) >= 200 or int(train.y.min()) < 0:
        raise DataError(f"{root / 'image_class_labels.txt'}: class ids outside 1..200")
    pos = {images[i]: k for k, i in enumerate(train_ids)}

    def lookup(e, where):
        rel = str(e).split("images/", 1)[-1]
        if rel not in pos:
            raise DataError(f"{where}: image {rel} is not a training image of {root / 'images.txt'}")
        return pos[rel]

    base_idx = torch.nonzero(train.y < 100).flatten()
    return FSCILBenchmark(train, test, _plan(200, 100, 10),
                          _resolve(cec_lists("cub200", 10, index_dir), lookup, "CUB-200 session list", base_idx))
