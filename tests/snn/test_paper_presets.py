"""The SLTT and SPIDE paper presets end to end on tiny files in the real formats (CIFAR-10 python pickles,
MNIST idx.gz, CIFAR10-DVS AEDAT 2.0 recordings in class folders), interrupted after the first epoch and
continued with ``--resume``: the run finishes, and every (stage, epoch) row of metrics.csv appears once."""

import csv
import gzip
import json
import pickle

import numpy as np
import pytest

from tenfold.cli import cli_main


def _write_cifar10(root, n=16):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": (np.arange(n) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return root


def _write_mnist(root):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 24), ("t10k", 12)):
        for kind, shape in (("images-idx3", (n, 28, 28)), ("labels-idx1", (n,))):
            array = rng.integers(0, 256 if kind.startswith("images") else 10, shape).astype(np.uint8)
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(root / f"{prefix}-{kind}-ubyte.gz", "wb") as fh:
                fh.write(header + array.tobytes())
    return root


def _write_cifar10_dvs(root, classes=("airplane", "automobile", "bird"), per_class=4, events=400):
    """jAER AEDAT 2.0 recordings (128x128 DVS): '#' header lines, then big-endian (address, timestamp)
    pairs with y in bits 22-30, x in bits 12-21 and the polarity in bit 11, as CIFAR10-DVS ships them."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                x, y = rng.integers(0, 128, events), rng.integers(0, 128, events)
                x = np.clip(x // 4 + 32 * c, 0, 127)  # a class-dependent region
                p, t = rng.integers(0, 2, events), np.sort(rng.integers(0, 1_000_000, events))
                addr = (y << 22) | (x << 12) | (p << 11)
                words = np.stack([addr, t], 1).astype(">u4").tobytes()
                (folder / f"cifar10_{name}_{i}.aedat").write_bytes(
                    b"#!AER-DAT2.0\r\n# This is a raw AE data file created by saveAERDATA.m\r\n" + words)
    return root


def _interrupted_then_resumed(tmp_path, monkeypatch, capsys, name, args):
    base = ["run", name, "--preset", "paper", "--out", str(tmp_path / "runs"), "--set", "epochs=2", *args]
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "1")
    assert cli_main(base) != 0
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    (folder,) = (tmp_path / "runs" / name).iterdir()
    assert not (folder / "results.json").exists() or json.loads((folder / "results.json").read_text())["status"] != "ok"
    code = cli_main(base + ["--resume"])
    assert code == 0, capsys.readouterr().err[-3000:]
    rows = [(r["stage"], r["epoch"]) for r in csv.DictReader((folder / "metrics.csv").open())]
    assert rows and len(rows) == len(set(rows)), rows
    result = json.loads((folder / "results.json").read_text())
    assert result["status"] == "ok"
    assert {int(e) for _, e in rows} == {1, 2}  # both epochs of every stage, once
    return result


@pytest.mark.slow
def test_sltt_cifar_paper_preset_resumes_on_cifar10_pickles(tmp_path, monkeypatch, capsys):
    root = _write_cifar10(tmp_path / "data")
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "sltt-cifar", [
        "--set", f"root={root}", "--set", "width=4", "--set", "batch_size=16", "--set", "T=2",
        "--set", "rules=[bptt,sltt-1]", "--set", "train_limit=32", "--set", "time_repeats=3",
        "--set", "time_batch=8", "--set", "timed_k=1"])
    assert result["metrics"]["saved_mb_sltt_1"] < result["metrics"]["saved_mb_bptt"]


@pytest.mark.slow
def test_sltt_dvs_cifar10_paper_preset_resumes_on_aedat2_recordings(tmp_path, monkeypatch, capsys):
    root = _write_cifar10_dvs(tmp_path / "dvs")
    # the paper's VGG-11 at 48x48 is minutes on a CPU; a narrow plan keeps the preset's data path and recipe
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "sltt-events", [
        "--set", f"root={root}", "--set", "size=16", "--set", "plan=[8,M,8,M]", "--set", "pool_to=2",
        "--set", "T=3", "--set", "batch_size=6", "--set", "time_repeats=3", "--set", "time_batch=6",
        "--set", "rules=[bptt,sltt,sltt-2]"])
    assert "event files under" in result["notes"]
    assert result["metrics"]["saved_mb_sltt"] < result["metrics"]["saved_mb_bptt"]


def test_sltt_dvs_preset_reports_missing_recordings(tmp_path, capsys):
    code = cli_main(["run", "sltt-events", "--preset", "paper", "--out", str(tmp_path / "runs"),
                     "--set", f"root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "event data not found" in err and "Traceback" not in err


@pytest.mark.slow
def test_spide_dvs_preset_resumes_on_aedat2_recordings(tmp_path, monkeypatch, capsys):
    root = _write_cifar10_dvs(tmp_path / "dvs")
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "spide-events", [
        "--set", f"root={root}", "--set", "size=12", "--set", "bins=4", "--set", "time_steps_back=4",
        "--set", "hidden=16", "--set", "batch_size=6"])
    assert "Event files under" in result["notes"] and 0 <= result["metrics"]["test_acc"] <= 1


@pytest.mark.slow
def test_spide_mnist_paper_preset_resumes_on_idx_files(tmp_path, monkeypatch, capsys):
    root = _write_mnist(tmp_path / "mnist")
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "spide-mnist-lenet", [
        "--set", f"root={root}", "--set", "width=0.2", "--set", "time_steps=4", "--set", "time_steps_back=4",
        "--set", "batch_size=12"])
    assert 0 <= result["metrics"]["test_acc"] <= 1


@pytest.mark.slow
def test_spide_cifar_paper_preset_resumes_on_cifar10_pickles(tmp_path, monkeypatch, capsys):
    root = _write_cifar10(tmp_path / "cifar", n=4)
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "spide-cifar", [
        "--set", f"root={root}", "--set", "width=0.03", "--set", "time_steps=3", "--set", "time_steps_back=3",
        "--set", "batch_size=10", "--set", "warmup_iters=2"])
    assert result["metrics"]["max_feedback_norm"] <= 2.0
