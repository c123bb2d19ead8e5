"""nio-cifar on the user path: a run interrupted after its first training epoch and resumed with
``tenfold run nio-cifar --resume`` ends with the numbers of an uninterrupted run, and the resume takes the
finished seed's NIO/uniform/GradInit initializations from their checkpoint instead of recomputing them.

The ResNet-18 is swapped for a small BatchNorm CNN (its running statistics are checkpointed like the
ResNet's): on this CPU a ResNet-18 run of the same config takes minutes and writes 1 GB of checkpoints;
the real ResNet-18 path runs in test_nio.py (test_cli_nio_cifar_preset_runs_resnet18_from_a_local_root)."""

import csv
import json

import pytest

from tenfold.cli import cli_main

# a tiny fake CIFAR-10 root (60 images per file: 290 training, 10 held-out, 60 test) and a tiny config
# (two lrs: the lr pick on the validation split sees both runs of each init)
TINY = ["--set", "seeds=2", "--set", "iterations=2", "--set", "gradinit_iterations=2", "--set", "uniform_steps=2",
        "--set", "nio_batch=4", "--set", "heldout=4", "--set", "train_epochs=2", "--set", "batch_size=64",
        "--set", "train_lrs=[0.1,0.05]"]


def _finished(out):
    (folder,) = (out / "nio-cifar").iterdir()
    result = json.loads((folder / "results.json").read_text())
    with (folder / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return folder, result, rows


@pytest.mark.slow  # three CLI runs: about 70 s of CPU here
def test_nio_cifar_interrupted_and_resumed_equals_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from snn_files import write_cifar10  # the shared CIFAR-10 pickle writer (tests/snn)

    import tenfold.papers.nio.experiments as experiments
    from tenfold.init.models import shapes_cnn

    monkeypatch.setattr(experiments, "cifar_model", lambda name, classes: shapes_cnn(4, classes, batchnorm=True))

    root = write_cifar10(tmp_path / "data", n=60)
    args = ["run", "nio-cifar", "--set", f"root={root}", *TINY]
    assert cli_main([*args, "--out", str(tmp_path / "whole")]) == 0, capsys.readouterr().err
    _, whole, whole_rows = _finished(tmp_path / "whole")

    # stopped before the second epoch of the first training run (seed 0, default init): seed 0's init
    # phase is checkpointed, seed 1's has not started
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "1")
    assert cli_main([*args, "--out", str(tmp_path / "cut")]) == 130, capsys.readouterr().err
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    (folder,) = (tmp_path / "cut" / "nio-cifar").iterdir()
    saved = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert saved == ["init-seed0.pt", "train-default-seed0-lr0.1.pt"]

    calls = {"nio": 0, "gradinit": 0}

    def counted(name):
        original = getattr(experiments, name)

        def wrapper(*a, **kw):
            calls[name] += 1
            return original(*a, **kw)
        return wrapper

    for name in calls:
        monkeypatch.setattr(experiments, name, counted(name))
    assert cli_main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0, capsys.readouterr().err
    assert calls == {"nio": 1, "gradinit": 1}  # seed 1 only: seed 0's initializations came from the checkpoint
    resumed_folder, resumed, resumed_rows = _finished(tmp_path / "cut")
    assert resumed_folder == folder

    assert resumed["metrics"] == whole["metrics"]
    assert resumed["samples"] == whole["samples"]
    assert resumed["tables"] == whole["tables"]
    assert resumed_rows == whole_rows  # every NIO/GradInit iteration and training epoch once, same values
    assert {r["stage"] for r in whole_rows} >= {"init-seed0", "train-nio-seed1-lr0.05", "nio-seed1", "gradinit-seed0"}


def test_a_repeated_training_lr_is_a_one_line_config_error(tmp_path, capsys):
    # each (seed, init, lr) run is a stage named by its lr: a repeated lr is refused before anything runs
    assert cli_main(["run", "nio-digits", "--out", str(tmp_path), "--set", "train_lrs=[0.1,0.1]"]) == 2
    assert "train_lrs" in capsys.readouterr().err
    assert not (tmp_path / "nio-digits").exists()
