"""The FIFO memory bank of negatives (MoCo / lightly memory_bank_size) and its checkpoint."""

import pytest
import torch
import torch.nn.functional as F

from tenfold.contrastive import mp_infonce, pair_positives
from tenfold.contrastive.attention import attention_weights
from tenfold.contrastive.bank import MemoryBank
from tenfold.data import ArrayDataset
from tenfold.engine import RunContext


def _direct(u, bank, tau, anchor_weights=None):
    """NT-Xent over the batch with the bank rows added to every denominator, straight from the formula."""
    z = F.normalize(u, dim=1)
    n = len(z)
    p = pair_positives(n)
    losses = []
    for i in range(n):
        others = torch.cat([z[:i], z[i + 1:], bank])
        losses.append(torch.logsumexp(others @ z[i] / tau, 0) - z[i] @ z[p[i]] / tau)
    r = torch.full((n,), 1.0 / n, dtype=u.dtype) if anchor_weights is None else anchor_weights
    return (r * torch.stack(losses)).sum()


@pytest.mark.parametrize("attention", [False, True])
def test_loss_with_a_bank_equals_infonce_over_batch_and_queued_negatives(attention):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(10, 5, generator=g, dtype=torch.float64, requires_grad=True)
    bank = F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    a = attention_weights(torch.randn(10, 3, generator=g, dtype=torch.float64), pair_positives(10)) if attention \
        else None
    tau = 0.3
    loss = mp_infonce(u, pair_positives(10), tau, anchor_weights=a, negatives=bank)
    ref = _direct(u, bank, tau, a)
    assert abs(loss.item() - ref.item()) < 1e-13
    (g1,) = torch.autograd.grad(loss, u)
    (g2,) = torch.autograd.grad(ref, u)
    assert torch.allclose(g1, g2, atol=1e-13, rtol=0)
    assert torch.autograd.gradcheck(lambda x: mp_infonce(x, pair_positives(10), tau, anchor_weights=a,
                                                         negatives=bank), (u.detach().clone().requires_grad_(),))
    # an empty bank is plain InfoNCE; the bank raises the loss (more negatives)
    assert mp_infonce(u, pair_positives(10), tau, negatives=bank[:0]).item() == mp_infonce(u, pair_positives(10),
                                                                                          tau).item()
    assert loss.item() > mp_infonce(u, pair_positives(10), tau, anchor_weights=a).item()


def test_the_queue_is_fifo_of_normalised_detached_rows():
    bank = MemoryBank(5, 2, dtype=torch.float64)
    assert bank.negatives().shape == (0, 2)
    rows = torch.arange(1, 15, dtype=torch.float64).view(7, 2).requires_grad_()
    bank.enqueue(rows[:3])
    assert torch.allclose(bank.negatives(), F.normalize(rows[:3].detach(), dim=1))
    bank.enqueue(rows[3:7])  # 7 rows into 5 slots: rows 2..6 remain, oldest first
    assert bank.filled == 5 and bank.ptr == 2
    assert torch.allclose(bank.negatives(), F.normalize(rows[2:7].detach(), dim=1))
    assert not bank.negatives().requires_grad
    big = torch.randn(12, 2, dtype=torch.float64)
    bank.enqueue(big)  # more rows than slots: the newest five
    assert torch.allclose(bank.negatives(), F.normalize(big[-5:], dim=1))
    other = MemoryBank(5, 2, dtype=torch.float64)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.negatives(), bank.negatives()) and (other.ptr, other.filled) == (bank.ptr, bank.filled)


def _pretrain(ctx, method="simclr", **kw):
    from tenfold.contrastive.models import mlp_encoder
    from tenfold.contrastive.pretrain import TrainConfig, pretrain

    g = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.rand(96, 1, 4, 4, generator=g), torch.arange(96) % 3)
    torch.manual_seed(0)
    t = TrainConfig(**{"epochs": 3, "batch_size": 16, "proj_dim": 8, "bank_size": 40, **kw})
    model, last = pretrain(method, mlp_encoder(16, 12, 6), data, t, ctx, stage=f"{method}-pre")
    return model


@pytest.mark.parametrize("method", ["simclr", "simclr-attn"])
def test_the_bank_is_in_the_stage_checkpoint_and_resume_is_exact(tmp_path, monkeypatch, method):
    full = _pretrain(RunContext(out_dir=tmp_path / "a"), method)
    monkeypatch.setenv("TENFOLD_STOP_AFTER_EPOCHS", "1")
    with pytest.raises(KeyboardInterrupt):
        _pretrain(RunContext(out_dir=tmp_path / "b"), method)
    monkeypatch.delenv("TENFOLD_STOP_AFTER_EPOCHS")
    saved = torch.load(tmp_path / "b" / "checkpoints" / f"{method}-pre.pt", weights_only=False)
    queue = saved["objects"]["state.extra"]["negatives"]
    assert queue["filled"] == 40 and queue["ptr"] == (6 * 32) % 40  # 6 steps of 2 x 16 rows into 40 slots
    resumed = _pretrain(RunContext(out_dir=tmp_path / "b", resume=True), method)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # the bank matters: without it the same run ends elsewhere
    plain = _pretrain(RunContext(out_dir=tmp_path / "c"), method, bank_size=0)
    assert not all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), plain.state_dict().values()))
