"""RunContext.average_gradients: every gradient becomes its mean over processes in one collective."""

import torch

from tenfold.engine import RunContext


class TwoRankFabric:
    """A stand-in for Fabric on rank 0 of 2: all_reduce averages with the other rank's flat vector."""

    global_rank, world_size = 0, 2

    def __init__(self, other: torch.Tensor) -> None:
        self.other, self.calls = other, 0

    def all_reduce(self, tensor, reduce_op="mean"):
        assert reduce_op == "mean"
        self.calls += 1
        return (tensor + self.other) / 2


def test_gradients_become_the_mean_over_ranks_and_unused_parameters_stay_unused(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2), "unused": torch.nn.Linear(2, 2)}).double()
    model["a"](torch.randn(4, 3, dtype=torch.float64)).pow(2).sum().backward()
    mine = [p.grad.clone() for p in model["a"].parameters()]
    other = [torch.randn_like(g) for g in mine]
    fabric = TwoRankFabric(torch.cat([g.reshape(-1) for g in other]))
    ctx = RunContext(out_dir=tmp_path, fabric=fabric)
    ctx.average_gradients(model)
    assert fabric.calls == 1
    for p, a, b in zip(model["a"].parameters(), mine, other):
        assert p.grad.dtype == torch.float64 and torch.equal(p.grad, (a + b) / 2)
    assert all(p.grad is None for p in model["unused"].parameters())


def test_one_process_leaves_gradients_alone(tmp_path):
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    before = model.weight.grad.clone()
    RunContext(out_dir=tmp_path).average_gradients(model)
    assert torch.equal(model.weight.grad, before)
