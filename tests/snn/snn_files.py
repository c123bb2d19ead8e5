"""Tiny files in the real formats of the SNN datasets, written by the tests."""

import pickle

import numpy as np


def write_cifar10(root, n=16):
    """``root/cifar-10-batches-py``: five training batches and a test batch of ``n`` random images each,
    pickled as the official python version is (``b"data"`` uint8 (n, 3072), ``b"labels"``). Returns ``root``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": (np.arange(n) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return root
