"""MPCL under several processes: negatives gathered with gradients, 2 gloo processes equal 1 on the same
global batch (loss and DDP-averaged gradients)."""

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tenfold.contrastive.methods import MethodConfig, method_loss
from tenfold.contrastive.models import ContrastiveModel

METHODS = ("simclr", "simclr-attn", "rewire")
# the variants' controls draw on the global batch from a generator seeded alike on every process
CONTROLS = {"simclr-attn": {"attention_weights": "permuted"}, "rewire": {"rewire_partners": "random"}}
BATCH, WORLD = 8, 2


def _model() -> ContrastiveModel:
    # no BatchNorm: its batch statistics are per process by design, so only the loss's own coupling is tested
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.Tanh())
    encoder.out_dim = 10
    return ContrastiveModel(encoder, nn.Linear(10, 6)).double()


def _views(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, 12, generator=g, dtype=torch.float64), torch.randn(BATCH, 12, generator=g,
                                                                              dtype=torch.float64)


def _loss_and_grads(method, x1, x2, **control):
    model = _model()
    loss, _ = method_loss(MethodConfig(method, tau=0.5, knn_k=1, rewire_beta=0.3, **control), model, x1, x2,
                          generator=torch.Generator().manual_seed(5))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _bank_loss_and_grads(x1, x2, a1, a2):
    """A memory bank filled by an earlier batch (a1, a2), then a step on (x1, x2): its negatives and queue."""
    from tenfold.contrastive.bank import MemoryBank

    model = _model()
    bank = MemoryBank(20, 6, dtype=torch.float64)  # 16 rows a step: the queue spans both batches
    cfg = MethodConfig("simclr", tau=0.5)
    with torch.no_grad():
        method_loss(cfg, model, a1, a2, negatives=bank)
    loss, _ = method_loss(cfg, model, x1, x2, negatives=bank)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], bank.negatives()


def _worker(rank, init_file, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x1, x2 = _views()
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        out = {}
        for method in METHODS:
            loss, grads = _loss_and_grads(method, x1[shard], x2[shard])
            for g in grads:  # what DDP does: average the gradients over processes
                dist.all_reduce(g)
                g /= WORLD
            out[method] = (loss, grads)
        for method, control in CONTROLS.items():
            loss, grads = _loss_and_grads(method, x1[shard], x2[shard], **control)
            for g in grads:
                dist.all_reduce(g)
                g /= WORLD
            out[f"{method}+control"] = (loss, grads)
        a1, a2 = _views(seed=2)
        loss, grads, queue = _bank_loss_and_grads(x1[shard], x2[shard], a1[shard], a2[shard])
        for g in grads:
            dist.all_reduce(g)
            g /= WORLD
        out["simclr+bank"] = (loss, grads, queue)
        if rank == 0:
            torch.save(out, out_file)
        dist.barrier()  # no process tears gloo down while its peer still talks to it (SIGABRT otherwise)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one_on_the_same_global_batch(tmp_path):
    out_file = tmp_path / "two.pt"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=WORLD, join=True)
    two = torch.load(out_file)
    x1, x2 = _views()
    runs = [(m, m, {}) for m in METHODS] + [(f"{m}+control", m, c) for m, c in CONTROLS.items()]
    for key, method, control in runs:
        loss, grads = _loss_and_grads(method, x1, x2, **control)  # one process, the global batch
        loss2, grads2 = two[key]
        assert torch.allclose(loss2, loss, rtol=0, atol=1e-12), method
        for g1, g2 in zip(grads, grads2):
            assert torch.allclose(g2, g1, rtol=1e-10, atol=1e-12), method
    # the memory bank holds the gathered global rows, so its negatives are those of one process too
    a1, a2 = _views(seed=2)
    loss, grads, queue = _bank_loss_and_grads(x1, x2, a1, a2)
    loss2, grads2, queue2 = two["simclr+bank"]
    assert torch.allclose(queue2, queue, rtol=0, atol=1e-14) and len(queue) == 20
    assert torch.allclose(loss2, loss, rtol=0, atol=1e-12)
    for g1, g2 in zip(grads, grads2):
        assert torch.allclose(g2, g1, rtol=1e-10, atol=1e-12)


def test_one_process_gathers_nothing():
    from tenfold.contrastive.methods import gather_rows

    x = torch.randn(3, 2, requires_grad=True)
    assert gather_rows(x) is x
