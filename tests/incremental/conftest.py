"""Tiny dataset folders in the real formats of the FSCIL benchmarks (files the loaders read, images of a
few pixels), built so that the carried CEC session lists resolve."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from tenfold.data.fscil_benchmarks import CEC_DIR


def _jpeg(path: Path, value: int, size: int = 10) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    arr = np.clip(rng.normal(40 + 2 * (value % 100), 30, size=(size, size + 2, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def _cec(name: str, sessions: int) -> list[list[str]]:
    return [(CEC_DIR / name / f"session_{t}.txt").read_text().split() for t in range(2, sessions + 2)]


def make_mini_imagenet(root: Path, base_per_class: int = 3, test_per_class: int = 2) -> Path:
    """split/train.csv, split/test.csv, images/: 60 base wnids, then the 40 novel wnids of the CEC lists."""
    novel = _cec("mini_imagenet", 8)
    wnids_novel = list(dict.fromkeys(line.split("/")[2] for s in novel for line in s))
    wnids = [f"n0000{k:04d}" for k in range(60)] + wnids_novel
    train, test = ["filename,label"], ["filename,label"]
    listed = {w: [line.split("/")[-1] for s in novel for line in s if line.split("/")[2] == w] for w in wnids_novel}
    for c, w in enumerate(wnids):
        names = listed.get(w) or [f"{w}{k:08d}.jpg" for k in range(base_per_class)]
        for f in names:
            train.append(f"{f},{w}")
            _jpeg(root / "images" / f, c)
        for k in range(test_per_class):
            f = f"{w}{90000 + k:08d}.jpg"
            test.append(f"{f},{w}")
            _jpeg(root / "images" / f, c)
    (root / "split").mkdir(parents=True, exist_ok=True)
    (root / "split" / "train.csv").write_text("\n".join(train) + "\n")
    (root / "split" / "test.csv").write_text("\n".join(test) + "\n")
    return root


def make_cub(root: Path, base_per_class: int = 2, test_per_class: int = 1) -> Path:
    """images.txt, train_test_split.txt, image_class_labels.txt, images/: class folders 001-100 made up,
    101-200 and their training images from the CEC lists."""
    novel = [line.split("images/", 1)[1] for s in _cec("cub200", 10) for line in s]
    folders = {int(p.split(".")[0]): p.split("/")[0] for p in novel}
    images, split, labels = [], [], []
    for c in range(1, 201):
        folder = folders.get(c, f"{c:03d}.Bird_{c:03d}")
        train = [p for p in novel if p.startswith(folder + "/")] or [f"{folder}/Bird_{c:03d}_{k}.jpg"
                                                                    for k in range(base_per_class)]
        tests = [f"{folder}/Test_{c:03d}_{k}.jpg" for k in range(test_per_class)]
        for rel, is_train in [(p, 1) for p in train] + [(p, 0) for p in tests]:
            i = len(images) + 1
            images.append(f"{i} {rel}")
            split.append(f"{i} {is_train}")
            labels.append(f"{i} {c}")
            _jpeg(root / "images" / rel, c)
    for name, lines in (("images.txt", images), ("train_test_split.txt", split), ("image_class_labels.txt", labels)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def make_cifar100(root: Path, per_class_train: int = 6, per_class_test: int = 2) -> tuple[Path, Path]:
    """cifar-100-python/{train,test} pickles (random pixels) and an index folder in the CEC format whose
    5-shot lists index that small training set (the carried lists index the real 50000 images)."""
    from tenfold.data.fewshot import write_session_files

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(100), n)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)
    labels = np.repeat(np.arange(100), per_class_train)
    novel = [[int(i) for c in range(60 + 5 * t, 65 + 5 * t) for i in np.flatnonzero(labels == c)[:5]]
             for t in range(8)]
    write_session_files(root / "index", novel)
    for t in range(8, 0, -1):  # session_1 .. 8 -> session_2 .. 9 (session 1 = base, derived by the loader)
        (root / "index" / f"session_{t}.txt").rename(root / "index" / f"session_{t + 1}.txt")
    return root, root / "index"


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    return make_mini_imagenet(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="session")
def cub_root(tmp_path_factory):
    return make_cub(tmp_path_factory.mktemp("cub") / "CUB_200_2011")


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    return make_cifar100(tmp_path_factory.mktemp("cifar"))
