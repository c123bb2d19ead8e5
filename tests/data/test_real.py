"""Real-format loaders on tiny files written here: CIFAR pickles and ImageFolder trees."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from tenfold.data.real import cifar, image_folder
from tenfold.errors import DataError


def _write_cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return folder


def test_cifar10_pickles_load(tmp_path):
    folder = _write_cifar10(tmp_path)
    train, test = cifar(tmp_path, train=True), cifar(tmp_path, train=False)
    assert train.x.shape == (20, 3, 32, 32) and len(test) == 4
    assert train.class_names[3] == "c3"
    raw = pickle.loads((folder / "test_batch").read_bytes())
    assert torch.allclose(test.x[0, 0, 0, :3] * 255, torch.tensor(raw[b"data"][0, :3], dtype=torch.float32))


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [5, 99]}))
    assert cifar(folder, train=False, num_classes=100).y.tolist() == [5, 99]


def test_cifar_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"put the python-version files .*data_batch_1.* in .*cifar-10-batches-py"):
        cifar(tmp_path)


def test_cifar_malformed_files_are_named(tmp_path):
    folder = _write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch"):
        cifar(tmp_path, train=False)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"shape \(2, 100\)"):
        cifar(tmp_path, train=False)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(DataError, match="labels outside"):
        cifar(tmp_path, train=False)


def test_image_folder(tmp_path):
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (6, 4), colour).save(tmp_path / cls / f"{i}.png")
    data = image_folder(tmp_path)
    assert data.class_names == ["cat", "dog"] and data.x.shape == (4, 3, 4, 6)
    assert data.y.tolist() == [0, 0, 1, 1] and float(data.x[0, 0].mean()) == 1.0
    assert image_folder(tmp_path, size=8).x.shape == (4, 3, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no class sub-folders"):
        image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        image_folder(tmp_path)
    (tmp_path / "empty" / "x.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="x.png cannot be read"):
        image_folder(tmp_path)
