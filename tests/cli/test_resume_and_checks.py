"""`tenfold run` on the user path: a resumed run continues with its own stored settings and names any field
a flag would change; a failing check (a bug, not a finding) exits 1 and names the check."""

import json

import pytest
import yaml

from tenfold.cli import cli_main

FAST = ["--set", "epochs=2", "--set", "lrs=[0.01]", "--set", "thresholds.min_test_acc=0"]


def _run(args, capsys):
    code = cli_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def interrupted(tmp_path, capsys, monkeypatch):
    """A digits-mlp run with non-default settings (epochs, seed), stopped after its first epoch."""
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "1")
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--seed", "3", *FAST], capsys)
    assert code == 130, err
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    (folder,) = (tmp_path / "digits-mlp").iterdir()
    return folder


def test_resume_from_continues_with_the_stored_config(interrupted, tmp_path, capsys):
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--resume-from", str(interrupted)], capsys)
    assert code == 0, err
    data = json.loads((interrupted / "results.json").read_text())
    assert data["status"] == "ok" and data["seed"] == 3 and data["restored_epochs"] >= 1
    stored = yaml.safe_load((interrupted / "config.yaml").read_text())
    assert stored["config"]["epochs"] == 2 and stored["seed"] == 3
    assert [p.name for p in (tmp_path / "digits-mlp").iterdir()] == [interrupted.name]


def test_resume_from_accepts_the_stored_values_repeated(interrupted, tmp_path, capsys):
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--resume-from", str(interrupted),
                         "--seed", "3", "--preset", "quick", "--set", "epochs=2", "--set", "lrs=[1e-2]"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("flags, named", [
    (["--set", "epochs=5"], "--set changes epochs (the run has epochs=2)"),
    (["--set", "epochs=2", "--set", "batch_size=32", "--set", "thresholds.min_test_acc=0.5"],
     "--set changes batch_size, thresholds.min_test_acc"),
    (["--seed", "0"], "--seed 0 differs from the run's seed 3"),
    (["--preset", "paper"], "--preset paper differs from the run's preset quick"),
])
def test_resume_from_names_the_fields_a_flag_would_change(interrupted, tmp_path, capsys, flags, named):
    before = (interrupted / "config.yaml").read_text()
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--resume-from", str(interrupted), *flags],
                        capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1, err
    assert named in lines[0] and str(interrupted) in lines[0]
    assert (interrupted / "config.yaml").read_text() == before
    assert json.loads((interrupted / "results.json").read_text())["status"] == "interrupted"


def test_resume_names_the_fields_a_config_file_would_change(interrupted, tmp_path, capsys):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("epochs: 2\nweight_decay: 0.5\n")
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), "--resume", "--config", str(cfg)], capsys)
    assert code == 2 and "--config" in err and "changes weight_decay" in err


def test_a_failing_check_exits_1_and_names_the_check(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TENFOLD_FAILED_CHECKS", raising=False)  # tests/conftest.py sets it to warn
    code, out, err = _run(["run", "digits-mlp", "--out", str(tmp_path), *FAST,
                           "--set", "thresholds.min_test_acc=1.0"], capsys)
    assert code == 1, err
    assert "1 check(s) failed: MLP test accuracy" in err and "run folder" in err
    (folder,) = (tmp_path / "digits-mlp").iterdir()
    data = json.loads((folder / "results.json").read_text())
    assert data["status"] == "ok"  # the run and its files are complete; the exit code tells the check
    (check,) = [c for c in data["claims"] if c["kind"] == "check"]
    assert not check["holds"]


def test_a_run_whose_checks_hold_exits_0(tmp_path, capsys):
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), *FAST,
                         "--set", "thresholds.min_test_acc=0.0"], capsys)
    assert code == 0 and "check(s) failed" not in err


def test_a_missing_extra_is_one_line_naming_the_package_and_the_install(tmp_path, capsys, monkeypatch):
    import sys

    for name in ("sklearn", "sklearn.datasets"):  # as if scikit-learn ([experiments]) were not installed
        monkeypatch.setitem(sys.modules, name, None)
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), *FAST], capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1, err
    assert "'sklearn' is not installed" in lines[0] and "pip install 'tenfold[all]'" in lines[0]


def test_failed_checks_warn_only_when_asked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TENFOLD_FAILED_CHECKS", "warn")
    code, _, err = _run(["run", "digits-mlp", "--out", str(tmp_path), *FAST,
                         "--set", "thresholds.min_test_acc=1.0"], capsys)
    assert code == 0 and "warning: 1 check(s) failed: MLP test accuracy" in err
