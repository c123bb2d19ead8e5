"""Test-wide settings: no progress bars, few threads, matplotlib without a screen."""

import os

os.environ.setdefault("TENFOLD_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def run_ctx(tmp_path):
    """A RunContext writing into a temporary folder (seed 0, CPU)."""
    from tenfold.engine import RunContext

    return RunContext(out_dir=tmp_path / "run", seed=0, experiment="test")
