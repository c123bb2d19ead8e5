"""Test-wide settings: no progress bars, few threads, matplotlib without a screen; the helper modules
of each test folder (panoptic_helpers, snn_files) importable, as pytest runs with --import-mode=importlib."""

import os
import sys
from pathlib import Path
from typing import NamedTuple

sys.path[:0] = [str(folder) for folder in sorted(Path(__file__).parent.iterdir()) if folder.is_dir()
                and not folder.name.startswith((".", "_"))]

os.environ.setdefault("TENFOLD_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
# the experiments' tests run them at toy settings (one epoch, a few steps) where an accuracy or residual check
# may fail: `tenfold run` then warns instead of exiting 1 (tests/cli/test_resume_and_checks.py tests the exit)
os.environ.setdefault("TENFOLD_FAILED_CHECKS", "warn")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def tenfold_cli(capsys, monkeypatch):
    """Run the console entry point in-process: ``tenfold_cli("run", ...)`` gives (returncode, stdout, stderr),
    exit codes and one-line errors as in a shell."""
    from tenfold.cli import main

    def call(*args) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["tenfold", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return call


@pytest.fixture
def run_ctx(tmp_path):
    """A RunContext writing into a temporary folder (seed 0, CPU)."""
    from tenfold.engine import RunContext

    return RunContext(out_dir=tmp_path / "run", seed=0, experiment="test")


# -- oracle tests are required in CI --------------------------------------------------------------------
# An oracle test compares with a reference library of the [oracles] extra (SpikingJelly, panoptic_parts).
# On a developer's machine without the extra it skips; under CI=true a skipped oracle test (or a skipped
# oracle module) fails instead, so a missing install step cannot hide behind a green run.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _is_oracle(node) -> bool:
    return node.get_closest_marker("oracle") is not None or "oracle" in node.nodeid.lower()


def _fail_skipped_oracle(report, node) -> None:
    if IN_CI and report.skipped and _is_oracle(node) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"CI: oracle test skipped ({reason}); oracle tests are required in CI: install the "
                           "[oracles] extra (`make oracles`)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skipped_oracle(outcome.get_result(), item)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skipped_oracle(outcome.get_result(), collector)
