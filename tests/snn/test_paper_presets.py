"""The SLTT and SPIDE paper presets end to end on tiny files in the real formats (CIFAR-10 python pickles,
MNIST idx.gz, CIFAR10-DVS AEDAT 2.0 recordings in class folders, DVS128 Gesture AEDAT 3.1 recordings with
label CSVs and trial lists), interrupted after the first epoch and
continued with ``--resume``: the run finishes, and every (stage, epoch) row of metrics.csv appears once."""

import csv
import gzip
import json
import struct

import numpy as np
import pytest

from tenfold.cli import cli_main

from snn_files import write_cifar10


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


def _write_aedat3(path, x, y, p, t, per_packet=64):
    """AEDAT 3.1 as DVS128 Gesture ships it: '#' header to '#!END-HEADER', then packets of a 28-byte
    header (type, source, size, ts offset, ts overflow, capacity, number, valid) and 8-byte polarity
    events (x << 17 | y << 2 | p << 1 | valid, timestamp); a non-polarity packet between them."""
    out = [b"#!AER-DAT3.1\r\n", b"#Format: RAW\r\n", b"#!END-HEADER\r\n"]
    for i in range(0, len(x), per_packet):
        sl = slice(i, i + per_packet)
        n = len(x[sl])
        out.append(struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n))
        words = np.stack([(x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1, t[sl]], 1)
        out.append(words.astype("<u4").tobytes())
        out.append(struct.pack("<HHIIIIII", 2, 1, 12, 4, 0, 1, 1, 1) + bytes(12))  # a special-event packet
    path.write_bytes(b"".join(out))


def _write_dvs_gesture(root, recordings=(("user01_fluorescent", "train"), ("user02_led", "train"),
                                         ("user24_lab", "test"))):
    """DvsGesture/ as published: recordings, their label CSVs (class 1..11, start/end in us) and the
    trial lists; each recording holds one 0.1 s interval per class of a few classes."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lists = {"train": [], "test": []}
    for name, split in recordings:
        xs, ys, ps, ts, rows = [], [], [], [], []
        for k, label in enumerate((1, 5, 11)):
            n, start = 300, 1_000_000 + k * 200_000
            xs.append(np.clip(rng.integers(0, 40, n) + 40 * k, 0, 127))
            ys.append(rng.integers(0, 128, n))
            ps.append(rng.integers(0, 2, n))
            ts.append(np.sort(rng.integers(start, start + 100_000, n)))
            rows.append(f"{label},{start},{start + 100_000}")
        _write_aedat3(root / f"{name}.aedat", *(np.concatenate(a) for a in (xs, ys, ps, ts)))
        (root / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + "\n".join(rows) + "\n")
        lists[split].append(f"{name}.aedat")
    for split, names in lists.items():
        (root / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n")
    return root


def test_aedat3_reader_and_gesture_samples(tmp_path):
    from tenfold.data.events import dvs_gesture, read_aedat3

    x, y, p, t = (np.array(v) for v in ([0, 127, 5], [3, 0, 127], [1, 0, 1], [10, 20, 2**31 - 1]))
    _write_aedat3(tmp_path / "a.aedat", x, y, p, t, per_packet=2)
    got = read_aedat3(tmp_path / "a.aedat")
    assert all(np.array_equal(a, b) for a, b in zip(got, (x, y, t, p)))
    data = dvs_gesture(_write_dvs_gesture(tmp_path / "DvsGesture"), "train", T=4, size=16)
    assert data.x.shape == (6, 4, 2, 16, 16) and data.y.tolist() == [0, 4, 10] * 2
    assert abs(float(data.x.sum()) * (128 / 16) ** 2 - 6 * 300) < 1e-3  # area resize keeps the event mass


def test_aedat3_reader_equals_spikingjelly(tmp_path, monkeypatch):
    sj = pytest.importorskip("spikingjelly")
    import importlib
    import sys
    import types

    from tenfold.data.events import read_aedat3

    if "spikingjelly.datasets" not in sys.modules:  # its __init__ needs h5py; load the reader's module alone
        pkg = types.ModuleType("spikingjelly.datasets")
        pkg.__path__ = [sj.__path__[0] + "/datasets"]
        monkeypatch.setitem(sys.modules, "spikingjelly.datasets", pkg)
        monkeypatch.delitem(sys.modules, "spikingjelly.datasets.utils", raising=False)
    try:
        utils = importlib.import_module("spikingjelly.datasets.utils")
    except ImportError as exc:
        pytest.skip(f"spikingjelly.datasets.utils does not import here ({exc})")
    rng = np.random.default_rng(1)
    x, y, p = rng.integers(0, 128, 200), rng.integers(0, 128, 200), rng.integers(0, 2, 200)
    t = np.sort(rng.integers(0, 10**7, 200))
    _write_aedat3(tmp_path / "b.aedat", x, y, p, t, per_packet=37)
    ref = utils.load_aedat_v3(tmp_path / "b.aedat")
    ours = dict(zip("xytp", read_aedat3(tmp_path / "b.aedat")))
    assert all(np.array_equal(np.asarray(ref[k]), ours[k]) for k in "xytp")


def _interrupted_then_resumed(tmp_path, monkeypatch, capsys, name, args, preset="paper"):
    base = ["run", name, "--preset", preset, "--out", str(tmp_path / "runs"), "--set", "epochs=2", *args]
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
    root = write_cifar10(tmp_path / "data")
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "sltt-cifar", [
        "--set", f"root={root}", "--set", "width=4", "--set", "batch_size=16", "--set", "T=2",
        "--set", "rules=[bptt,sltt-1]", "--set", "train_limit=32", "--set", "time_repeats=5",
        "--set", "time_batch=8", "--set", "timed_k=1"])
    assert result["metrics"]["saved_mb_sltt_1"] < result["metrics"]["saved_mb_bptt"]


@pytest.mark.slow
def test_sltt_dvs_cifar10_paper_preset_resumes_on_aedat2_recordings(tmp_path, monkeypatch, capsys):
    root = _write_cifar10_dvs(tmp_path / "dvs")
    # the paper's VGG-11 at 48x48 is minutes on a CPU; a narrow plan keeps the preset's data path and recipe
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "sltt-events", [
        "--set", f"root={root}", "--set", "size=16", "--set", "plan=[8,M,8,M]", "--set", "pool_to=2",
        "--set", "T=3", "--set", "batch_size=6", "--set", "time_repeats=5", "--set", "time_batch=6",
        "--set", "rules=[bptt,sltt,sltt-2]"])
    assert "event files under" in result["notes"]
    assert result["metrics"]["saved_mb_sltt"] < result["metrics"]["saved_mb_bptt"]


@pytest.mark.slow
def test_sltt_dvs_gesture_paper_preset_resumes_on_aedat3_recordings(tmp_path, monkeypatch, capsys):
    root = _write_dvs_gesture(tmp_path / "DvsGesture")
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "sltt-events", [
        "--set", f"root={root}", "--set", "size=16", "--set", "plan=[8,M,8,M]", "--set", "pool_to=2",
        "--set", "T=4", "--set", "batch_size=3", "--set", "time_repeats=5", "--set", "time_batch=3",
        "--set", "rules=[bptt,sltt,sltt-2]", "--set", "timed_k=2"], preset="paper-gesture")
    assert result["metrics"]["saved_mb_sltt"] < result["metrics"]["saved_mb_bptt"]


def test_sltt_dvs_preset_reports_missing_recordings(tmp_path, capsys):
    code = cli_main(["run", "sltt-events", "--preset", "paper", "--out", str(tmp_path / "runs"),
                     "--set", f"root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "event data not found" in err and "Traceback" not in err
    code = cli_main(["run", "sltt-events", "--preset", "paper-gesture", "--out", str(tmp_path / "runs"),
                     "--set", f"root={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "DVS128 Gesture not found" in err and "Traceback" not in err


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
    root = write_cifar10(tmp_path / "cifar", n=4)
    result = _interrupted_then_resumed(tmp_path, monkeypatch, capsys, "spide-cifar", [
        "--set", f"root={root}", "--set", "width=0.03", "--set", "time_steps=3", "--set", "time_steps_back=3",
        "--set", "batch_size=10", "--set", "warmup_iters=2"])
    assert result["metrics"]["max_feedback_norm"] <= 2.0
