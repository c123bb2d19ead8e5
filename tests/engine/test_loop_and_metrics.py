"""The fit loop: metrics.csv, NaN detection, sharding, and resume at the exact epoch."""

import csv

import pytest
import torch

from tenfold.data import ArrayDataset
from tenfold.engine import RunContext, fit
from tenfold.engine.loop import batches
from tenfold.errors import ConfigError, ConvergenceError


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    return ArrayDataset(x, (x[:, 0] > 0).long())


def _train(ctx, epochs, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(batch, state):
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        ctx.backward(loss)
        opt.step()
        return {"loss": loss}

    fit(model=model, step=step, dataset=_toy(), epochs=epochs, batch_size=16, ctx=ctx, optimizer=opt, **kw)
    return model


def test_metrics_csv_has_one_row_per_epoch(tmp_path):
    ctx = RunContext(out_dir=tmp_path)
    _train(ctx, 3)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_resume_after_interruption_is_bit_identical(tmp_path):
    full = _train(RunContext(out_dir=tmp_path / "a"), 5)
    with pytest.raises(KeyboardInterrupt):
        _train(RunContext(out_dir=tmp_path / "b"), 5, stop_after_epochs=2)
    resumed = _train(RunContext(out_dir=tmp_path / "b", resume=True), 5)
    assert torch.equal(full.weight, resumed.weight) and torch.equal(full.bias, resumed.bias)
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]


def test_non_finite_loss_stops_cleanly(tmp_path):
    ctx = RunContext(out_dir=tmp_path)
    model = torch.nn.Linear(3, 2)

    def step(batch, state):
        return {"loss": torch.tensor(float("nan"))}

    with pytest.raises(ConvergenceError, match="loss became nan at train epoch 1, step 1"):
        fit(model=model, step=step, dataset=_toy(), epochs=2, batch_size=16, ctx=ctx)


def test_global_batches_are_split_evenly_over_processes():
    data = ArrayDataset(torch.arange(64).float(), torch.zeros(64))

    def run(rank=0, world_size=1):
        return [b[0] for b in batches(data, 16, shuffle=True, generator=torch.Generator().manual_seed(3),
                                      rank=rank, world_size=world_size)]

    full, shard0, shard1 = run(), run(0, 2), run(1, 2)
    for whole, a, b in zip(full, shard0, shard1, strict=True):
        assert len(a) == len(b) == 8
        assert sorted(torch.cat([a, b]).tolist()) == sorted(whole.tolist())
    with pytest.raises(ConfigError, match="batch_size=15"):
        next(batches(data, 15, shuffle=False, world_size=2))


def test_resume_truncation_keeps_other_stages_rows(tmp_path):
    from tenfold.engine.metrics import MetricsLog

    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in range(1, 6):
        log.log(stage="a", epoch=epoch, loss=1.0)
    for epoch in range(1, 4):
        log.log(stage="b", epoch=epoch, loss=1.0)
    log.truncate_after("epoch", 2, stage="b")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("a", e) for e in range(1, 6)] + [("b", 1), ("b", 2)]
