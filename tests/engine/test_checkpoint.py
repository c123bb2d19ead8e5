"""Atomic writes and checkpoints: a crash at any point leaves the old file or the new one."""

import os

import pytest
import torch

from tenfold.engine.checkpoint import (atomic_write_bytes, atomic_write_json, load_state, load_weights, save_state,
                                       save_weights)
from tenfold.errors import DataError


def test_crash_during_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert path.read_text().strip().endswith("}") and '"v": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_crash_during_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"

    real_fsync = os.fsync

    def boom(fd):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"w": torch.ones(1000)})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_state_and_weights_round_trip(tmp_path):
    state = {"w": torch.randn(3, 4), "epoch": 2, "nested": {"x": [1, 2]}}
    save_state(tmp_path / "s.pt", state)
    back = load_state(tmp_path / "s.pt")
    assert torch.equal(back["w"], state["w"]) and back["epoch"] == 2 and back["nested"] == {"x": [1, 2]}
    model = torch.nn.Linear(3, 2)
    save_weights(model, tmp_path / "m.safetensors")
    loaded = load_weights(tmp_path / "m.safetensors")
    assert torch.equal(loaded["weight"], model.weight.detach())


def test_corrupt_or_missing_checkpoints_name_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    atomic_write_bytes(bad, b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        load_state(bad)
    with pytest.raises(DataError, match="missing.pt"):
        load_state(tmp_path / "missing.pt")
    with pytest.raises(DataError, match="bad.pt"):
        load_weights(bad)


def test_atomic_files_get_ordinary_permissions(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
