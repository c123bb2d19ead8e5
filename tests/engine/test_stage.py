"""The resumable stage: interrupted at any epoch and resumed, a custom loop ends bit-identically,
metrics rows appear once, the best checkpoint is kept, a finished stage is skipped."""

import csv

import pytest
import torch

from tenfold.engine import RunContext, Stage
from tenfold.engine import stage as stage_mod


def _loop(ctx, epochs=5, stop=None, monitor=None):
    """A custom loop with a scheduler, a generator that outlives epochs and global-RNG dropout."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    noise = torch.Generator().manual_seed(7)
    seen = {"batches": 0}
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long()
    st = Stage(ctx, "toy", model=model, optimizer=opt, scheduler=sched, state={"noise": noise, "seen": seen},
               monitor=monitor)
    for epoch in st.epochs(epochs):
        if stop is not None and epoch > stop:
            raise KeyboardInterrupt
        order = st.generator()
        perm = torch.randperm(32, generator=order)
        for i in range(0, 32, 8):
            idx = perm[i:i + 8]
            xb = x[idx] + 0.1 * torch.randn(8, 3, generator=noise)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen["batches"] += 1
        sched.step()
        model.eval()
        st.log(loss=loss, lr=sched.get_last_lr()[0], acc=float((model(x).argmax(1) == y).float().mean()))
        model.train()
    return model, st, seen


def _rows(folder):
    return list(csv.DictReader((folder / "metrics.csv").open()))


@pytest.mark.parametrize("stop", [0, 1, 3, 4])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop):
    full, st_full, seen_full = _loop(RunContext(out_dir=tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        _loop(RunContext(out_dir=tmp_path / "b"), stop=stop)
    resumed, st, seen = _loop(RunContext(out_dir=tmp_path / "b", resume=True))
    assert st.restored == (stop > 0)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert seen == seen_full and st.history == st_full.history
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_global_rng_after_the_stage_matches(tmp_path):
    _loop(RunContext(out_dir=tmp_path / "a"))
    after_full = torch.rand(4)
    with pytest.raises(KeyboardInterrupt):
        _loop(RunContext(out_dir=tmp_path / "b"), stop=2)
    _loop(RunContext(out_dir=tmp_path / "b", resume=True))
    assert torch.equal(after_full, torch.rand(4))


def test_a_row_logged_but_not_checkpointed_is_written_once(tmp_path, monkeypatch):
    """A kill between the row and the checkpoint: the resumed epoch's row replaces it."""
    _loop(RunContext(out_dir=tmp_path / "a"))
    calls = {"n": 0}
    real = stage_mod.save_state

    def dying(path, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path, state)

    monkeypatch.setattr(stage_mod, "save_state", dying)
    with pytest.raises(KeyboardInterrupt):
        _loop(RunContext(out_dir=tmp_path / "b"))
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == ["1", "2", "3"]
    monkeypatch.setattr(stage_mod, "save_state", real)
    _loop(RunContext(out_dir=tmp_path / "b", resume=True))
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_finished_stage_is_restored_and_skipped(tmp_path):
    model, _, _ = _loop(RunContext(out_dir=tmp_path))
    again, st, _ = _loop(RunContext(out_dir=tmp_path, resume=True))
    assert st.restored and st.epoch == 5 and len(st.history) == 5
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert len(_rows(tmp_path)) == 5


def test_best_checkpoint_is_kept_and_restored(tmp_path):
    model, st, _ = _loop(RunContext(out_dir=tmp_path), monitor="acc")
    assert (tmp_path / "checkpoints" / "toy.pt").is_file() and (tmp_path / "checkpoints" / "toy.best.pt").is_file()
    best = max(st.history, key=lambda r: r["acc"])
    assert st.best["epoch"] == best["epoch"]
    st.restore_best()
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(1))
    model.eval()
    assert float((model(x).argmax(1) == (x[:, 0] > 0).long()).float().mean()) == pytest.approx(best["acc"])


def test_names_and_objects_are_checked(tmp_path):
    ctx = RunContext(out_dir=tmp_path)
    Stage(ctx, "a")
    with pytest.raises(ValueError, match="used twice"):
        Stage(ctx, "a")
    with pytest.raises(ValueError, match="file-name-safe"):
        Stage(ctx, "../x")
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        Stage(ctx, "b", state={"x": object()})
