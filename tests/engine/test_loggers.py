"""Metrics go through Lightning's logger interface: ``metrics.csv`` through a CSVLogger subclass (always) and
TensorBoard scalars through Lightning's TensorBoardLogger (``tensorboard`` is in the ``[test]`` extra, so
that path is tested, not skipped); a resumed stage writes each row once to the CSV."""

import csv

import pytest
import torch
from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

from tenfold.engine import RunContext
from tenfold.engine.loggers import run_loggers, tensorboard_available


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_is_installed_for_the_tests():
    assert tensorboard_available(), "the [test] extra installs tensorboard; its logger path must be tested"


def test_rows_reach_the_csv_and_tensorboard(tmp_path):
    ctx = RunContext(out_dir=tmp_path)
    assert isinstance(ctx.loggers[0], CSVLogger)
    assert isinstance(ctx.loggers[1].logger, TensorBoardLogger)
    ctx.log_metrics(stage="train-seed0", epoch=1, step=10, loss=0.5, acc=torch.tensor(0.25))
    ctx.log_metrics(stage="train-seed0", epoch=2, step=20, loss=0.25, acc=0.5)
    ctx.log_metrics(method="gd", T=4, queries=7)
    with (tmp_path / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stage"] for r in rows] == ["train-seed0", "train-seed0", ""]
    assert [r["loss"] for r in rows] == ["0.5", "0.25", ""]
    assert rows[2]["method"] == "gd" and rows[2]["queries"] == "7"
    scalars = _scalars(tmp_path / "tensorboard")
    assert scalars["train-seed0/loss"] == [(10, 0.5), (20, 0.25)]
    assert scalars["train-seed0/acc"] == [(10, 0.25), (20, 0.5)]
    assert scalars["T"] == [(2, 4.0)] and scalars["queries"] == [(2, 7.0)]  # no step column: the row's index


def test_without_tensorboard_only_the_csv_is_written(tmp_path):
    (csv_logger,) = run_loggers(tmp_path, tensorboard=False)
    csv_logger.log_metrics({"loss": 1.0}, step=3)
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["loss,step", "1.0,3"]
    assert not (tmp_path / "tensorboard").exists()


def test_other_ranks_write_nothing(tmp_path):
    loggers = run_loggers(tmp_path, enabled=False)
    assert len(loggers) == 1
    loggers[0].log_metrics({"loss": 1.0})
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_resumed_stage_writes_each_row_once(tmp_path, monkeypatch, kill_after):
    def run(resume):
        ctx = RunContext(out_dir=tmp_path, resume=resume)
        weight = torch.nn.Parameter(torch.ones(2))
        stage = ctx.stage("train", model=torch.nn.ParameterList([weight]))
        for epoch in stage.epochs(3):
            with torch.no_grad():
                weight.mul_(0.5)
            stage.log(loss=float(weight.detach().sum()))

    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", str(kill_after))
    with pytest.raises(KeyboardInterrupt):
        run(resume=False)
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    run(resume=True)
    with (tmp_path / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["loss"]) for r in rows] == [("1", "1.0"), ("2", "0.5"), ("3", "0.25")]


def test_a_stale_lightning_rank_in_the_process_does_not_silence_the_run(tmp_path, monkeypatch):
    """A Fabric built earlier in this process (another run, a test under a launcher's environment) leaves
    Lightning's process-wide rank_zero_only.rank at its rank; the run's rank-0 loggers still write."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 2)
    ctx = RunContext(out_dir=tmp_path)
    ctx.log_metrics(stage="train", epoch=1, step=5, loss=0.5)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1:] == ["train,1,5,0.5"]
    assert _scalars(tmp_path / "tensorboard")["train/loss"] == [(5, 0.5)]
    assert rank_zero_only.rank == 2  # left as it was
