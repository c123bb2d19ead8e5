"""LION's mechanism ablations keep the parameter budget, and breaking a mechanism on purpose fails a test.

- ``solve="one_step"``: one explicit step of the same layers (same parameters and init), no solver calls;
- ``score="random"``: random masks of exactly the same sparsity, drawn without looking at the weights.
The ``assert_*`` helpers are the properties the full method must have; each ablation must violate its own.
"""

from __future__ import annotations

import math

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError
from tenfold.implicit import EquilibriumSolver
from tenfold.tuning.foundation import build_vit
from tenfold.tuning.lion import lion_parameter_count
from tenfold.tuning.lion_pruning import LotteryPruner, prunable_weights

RECURRENT = (("input_prompt", "k1"), ("input_prompt", "k2"), ("output_prompt", "a"))


def tiny_lion(seed: int = 0, **options):
    vit = build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=1, num_heads=2)
    return tt.apply(vit, "lion", rank=4, hidden=2, seed=seed, **options)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(8, 1, 8, 8, generator=g), torch.arange(8) % 5


def drive(lion) -> None:
    """Non-zero U and W_up (both start at 0): a prompt that is not 0, so the recurrence matters."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        lion.input_prompt.u.copy_(torch.randn(lion.input_prompt.u.shape, generator=g))
        lion.output_prompt.w_up.copy_(torch.randn(lion.output_prompt.w_up.shape, generator=g))


def assert_equilibrium(lion) -> None:
    """LION's mechanism: each layer's prompt is a fixed point z = f(z) (not one step f(0)), and the
    recurrent weights (K1, K2, A: what only the fixed point depends on) receive gradient."""
    x, y = batch()
    lion.eval()
    with torch.no_grad():
        f, z0 = lion.input_prompt.equation(x)
        z = lion.input_prompt.prompt(x)
        assert (f(z) - z).norm() / f(z).norm() <= 1e-3, "input prompt is not a fixed point"
        assert (z - f(z0)).norm() / z.norm() > 1e-3, "input prompt is one explicit step"
    lion.train()
    lion.zero_grad()
    torch.nn.functional.cross_entropy(lion(x), y).backward()
    for layer, name in RECURRENT:
        grad = getattr(getattr(lion, layer), name).grad
        assert grad is not None and grad.abs().sum() > 0, f"{layer}.{name} gets no gradient"


def test_the_equilibrium_has_its_mechanism_and_one_step_breaks_it():
    full = tiny_lion()
    drive(full)
    assert_equilibrium(full)
    ablated = tiny_lion(solve="one_step")
    drive(ablated)
    with pytest.raises(AssertionError):
        assert_equilibrium(ablated)


def test_one_step_keeps_parameters_and_init_and_never_calls_the_solver(monkeypatch):
    full, ablated = tiny_lion(seed=2), tiny_lion(seed=2, solve="one_step")
    assert tt.count_parameters(full) == tt.count_parameters(ablated)
    assert lion_parameter_count(full) == lion_parameter_count(ablated)
    a, b = full.state_dict(), ablated.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same initialisation

    def no_solver(*args, **kwargs):
        raise AssertionError("the one-step ablation called the equilibrium solver")

    monkeypatch.setattr(EquilibriumSolver, "forward", no_solver)
    drive(ablated)
    x, y = batch()
    ablated.train()
    torch.nn.functional.cross_entropy(ablated(x), y).backward()
    assert all(info is None for info in ablated.solver_infos().values())  # no solver iterations
    assert all(info is None for info in ablated.backward_infos().values())  # no implicit gradient
    f, z0 = ablated.input_prompt.equation(x)
    with torch.no_grad():
        assert torch.equal(ablated.input_prompt.prompt(x), f(z0))  # exactly one step from z0 = 0
        assert torch.equal(f(z0), torch.tanh(torch.nn.functional.conv2d(x, ablated.input_prompt.u,
                                                                           ablated.input_prompt.b, padding=1)))


def test_unknown_solve_is_a_one_line_error():
    with pytest.raises(ConfigError) as err:
        tiny_lion(solve="two_steps")
    assert str(err.value).startswith("solve=") and "\n" not in str(err.value)


def train_with(lion, pruner, steps: int = 3, lr: float = 1e-2) -> None:
    opt = torch.optim.AdamW([p for p in lion.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    lion.train()
    for i in range(steps):
        x, y = batch(i)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lion(x), y).backward()
        pruner.after_backward()
        pruner.before_step()
        opt.step()
        pruner.after_step(lr)


def assert_lottery_selection(pruner) -> None:
    """The lottery mechanism: the kept set is the top n - floor(rho n) of |theta * dL/dtheta| (recomputed
    from this epoch's gradients), so every kept score is at least every dropped one."""
    scores = {k: (pruner._param(k).detach() * pruner.grad_sum[k]).abs() for k in pruner.weights}
    pruner.recompute()
    kept = torch.cat([scores[k][pruner.keep[k]] for k in scores])
    dropped = torch.cat([scores[k][~pruner.keep[k]] for k in scores])
    assert kept.min() >= dropped.max(), "kept weights are not the top-scoring ones"


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.9])
def test_random_masks_have_exactly_the_lottery_sparsity(rho):
    lottery, random = tiny_lion(), tiny_lion()
    masks = {}
    for lion, score in ((lottery, "gsm"), (random, "random")):
        pruner = LotteryPruner(lion, rho, score=score, generator=torch.Generator().manual_seed(1))
        train_with(lion, pruner)
        pruner.recompute()
        train_with(lion, pruner)
        pruner.recompute()
        pruner.finalize()
        assert pruner.zero_count() == math.floor(rho * pruner.size)
        masks[score] = torch.cat([getattr(m, f"{a}_mask").flatten() for m, a in prunable_weights(lion).values()])
    assert masks["gsm"].sum() == masks["random"].sum()
    assert not torch.equal(masks["gsm"], masks["random"])
    assert lion_parameter_count(lottery)["trainable"] == lion_parameter_count(random)["trainable"]


def test_random_masks_are_fixed_per_run_and_seeded():
    def kept(seed: int, epochs: int = 2):
        lion = tiny_lion()
        pruner = LotteryPruner(lion, 0.5, score="random", generator=torch.Generator().manual_seed(seed))
        sets = []
        for _ in range(epochs):
            train_with(lion, pruner, steps=1)
            pruner.recompute()
            sets.append(torch.cat([k.flatten() for k in pruner.keep.values()]))
        return sets

    first, second = kept(0)
    assert torch.equal(first, second)  # one draw for the whole run: the kept set does not wander
    assert not torch.equal(kept(1)[0], first)


def test_the_lottery_selects_by_score_and_random_masks_break_it():
    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5, score="gsm")
    train_with(lion, pruner)
    assert_lottery_selection(pruner)
    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5, score="random", generator=torch.Generator().manual_seed(0))
    train_with(lion, pruner)
    with pytest.raises(AssertionError):
        assert_lottery_selection(pruner)


def test_pool_zero_removes_the_raw_pixel_path_of_the_output_layer():
    """pool=0: the output layer reads the backbone features only (VPT-deep has no raw-pixel path either)."""
    from tenfold.tuning.lion import OutputPromptLayer

    g = torch.Generator().manual_seed(0)
    layer = OutputPromptLayer(features=6, channels=1, rank=4, pool=0, generator=g)
    with torch.no_grad():
        layer.w_up.copy_(torch.randn(6, 4, generator=g))
    assert not hasattr(layer, "e") and layer.PRUNABLE == ("a", "b", "w_up")
    h = torch.randn(3, 6, generator=g)
    x1, x2 = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    layer.eval()
    with torch.no_grad():
        assert torch.equal(layer(h, x1), layer(h, x2))
    full, none = tiny_lion(), tiny_lion(pool=0)
    assert tt.count_parameters(full)["trainable"] - tt.count_parameters(none)["trainable"] == 4 * 1 * 2 * 2
    assert "output_prompt.e" not in dict(none.named_parameters())
    assert len(prunable_weights(none)) == len(prunable_weights(full)) - 1
