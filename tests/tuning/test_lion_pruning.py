"""Lottery pruning of LION's implicit layers: exact zero counts, masks that hold, soft = hard model."""

from __future__ import annotations

import math

import pytest
import torch

import tenfold.tuning as tt
from tenfold.errors import ConfigError
from tenfold.tuning.foundation import build_vit
from tenfold.tuning.lion_pruning import (
    LotteryPruner,
    hard_pruned_copy,
    imp_zero_counts,
    prunable_weights,
    rewind,
    snapshot,
)


def tiny_lion():
    vit = build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=1, num_heads=2)
    return tt.apply(vit, "lion", rank=4, hidden=2)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(8, 1, 8, 8, generator=g), torch.arange(8) % 5


def train_steps(lion, pruner, opt, steps: int, lr: float = 1e-2):
    lion.train()
    for i in range(steps):
        x, y = batch(i)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lion(x), y).backward()
        if pruner is not None:
            pruner.after_backward()
            pruner.before_step()
        opt.step()
        if pruner is not None:
            pruner.after_step(lr)


def optimizer(lion, lr: float = 1e-2):
    return torch.optim.AdamW([p for p in lion.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.5, 0.9])
def test_finalised_pruning_leaves_exactly_floor_rho_n_zeros_that_stay_zero(rho):
    lion = tiny_lion()
    pruner = LotteryPruner(lion, rho)
    opt = optimizer(lion)
    train_steps(lion, pruner, opt, 2)
    pruner.recompute()
    train_steps(lion, pruner, opt, 2)
    pruner.finalize()
    n = pruner.size
    assert n == sum(m.masked(a).numel() for m, a in prunable_weights(lion).values())
    assert sum(int((~k).sum()) for k in pruner.keep.values()) == math.floor(rho * n)
    assert pruner.zero_count() == math.floor(rho * n)  # the kept weights are all non-zero after training
    train_steps(lion, None, opt, 3)  # AdamW momentum and weight decay cannot revive a masked weight
    assert pruner.zero_count() == math.floor(rho * n)
    for module, attr in prunable_weights(lion).values():
        mask = getattr(module, f"{attr}_mask")
        assert torch.all(module.masked(attr)[mask == 0] == 0)


def test_soft_masked_model_equals_the_hard_pruned_one():
    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5)
    opt = optimizer(lion)
    train_steps(lion, pruner, opt, 2)
    pruner.recompute()
    pruner.finalize()
    train_steps(lion, None, opt, 2)  # raw weights under the mask may move; the masked ones may not
    hard = hard_pruned_copy(lion).eval()
    lion.eval()
    x, _ = batch(9)
    with torch.no_grad():
        assert torch.equal(lion(x), hard(x))
    for module, attr in prunable_weights(hard).values():
        assert torch.all(getattr(module, f"{attr}_mask") == 1)


def test_non_kept_weights_get_no_gradient_step_and_decay_geometrically():
    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5, decay=10.0)
    opt = optimizer(lion, lr=1e-2)
    train_steps(lion, pruner, opt, 2)
    pruner.recompute()
    before = {k: pruner._param(k).detach().clone() for k in pruner.weights}
    train_steps(lion, pruner, opt, 3, lr=1e-2)
    moved = 0
    for key, old in before.items():
        drop, keep = ~pruner.keep[key], pruner.keep[key]
        assert torch.allclose(pruner._param(key)[drop], old[drop] * (1 - 1e-2 * 10.0) ** 3, atol=1e-7)
        moved += int((pruner._param(key)[keep] != old[keep]).sum())
    assert moved == pruner.size - pruner.zeros_target  # every kept weight took an AdamW step


def test_scores_rank_by_theta_times_gradient_or_magnitude():
    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5, score="gsm")
    for key in pruner.weights:
        pruner.grad_sum[key].fill_(1.0)
    scores = pruner.scores()
    for key, s in scores.items():
        assert torch.equal(s, pruner._param(key).detach().abs())  # with gradient 1, |theta g| = |theta|
    pruner.recompute()
    kept = torch.cat([pruner._param(k).detach().abs()[pruner.keep[k]] for k in pruner.weights])
    dropped = torch.cat([pruner._param(k).detach().abs()[~pruner.keep[k]] for k in pruner.weights])
    assert kept.min() >= dropped.max()
    assert all(torch.equal(g, torch.zeros_like(g)) for g in pruner.grad_sum.values())


def test_iterative_magnitude_pruning_with_rewinding():
    assert imp_zero_counts(100, 0.5) == [20, 36, 48, 50]
    assert imp_zero_counts(100, 0.0) == []
    lion = tiny_lion()
    start = snapshot(lion)
    pruner = LotteryPruner(lion, 0.5, score="magnitude")
    opt = optimizer(lion)
    pruned_before = None
    for zeros in imp_zero_counts(pruner.size, 0.5):
        train_steps(lion, None, opt, 2)
        pruner.prune_magnitude(zeros)
        current = {k: ~m for k, m in pruner.keep.items()}
        if pruned_before is not None:  # pruned weights never return
            assert all(torch.all(current[k][pruned_before[k]]) for k in current)
        pruned_before = current
        rewind(lion, start)
        assert pruner.zero_count() >= zeros
    assert sum(int((~k).sum()) for k in pruner.keep.values()) == math.floor(0.5 * pruner.size)


@pytest.mark.parametrize("rho", [-0.1, 1.0, 1.5])
def test_rho_outside_the_unit_interval_is_a_one_line_error(rho):
    with pytest.raises(ConfigError, match=r"rho=.*\[0, 1\)"):
        LotteryPruner(tiny_lion(), rho)


def test_pruned_lion_masks_survive_save_and_load_and_adamw_keeps_pruned_weights_zero(tmp_path):
    """Issue 21: masks are saved with the tensors; AdamW's momentum (built up while dense) and weight decay
    do not move weights under a zero mask once the training loop calls tuning_after_step()."""
    from tenfold.tuning.lion import lion_parameter_count

    lion = tiny_lion()
    pruner = LotteryPruner(lion, 0.5, score="magnitude")
    opt = torch.optim.AdamW([p for p in lion.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    train_steps(lion, None, opt, 3)            # dense phase: momentum on every weight
    pruner.recompute()
    pruner.finalize()
    for i in range(3):                          # after finalisation: the stored weights must stay zero
        x, y = batch(10 + i)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lion(x), y).backward()
        opt.step()
        lion.tuning_after_step()
    for key, (module, attr) in prunable_weights(lion).items():
        mask = getattr(module, f"{attr}_mask")
        assert torch.equal(getattr(module, attr)[mask == 0], torch.zeros_like(getattr(module, attr)[mask == 0])), key
    zeros = pruner.zero_count()
    assert zeros == math.floor(0.5 * pruner.size)
    path = tt.save_tuned(lion, tmp_path / "lion.safetensors")
    base = build_vit(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=16, depth=1, num_heads=2)
    loaded = tt.load_tuned(base, path)
    assert LotteryPruner(loaded, 0.5).zero_count() == zeros
    assert lion_parameter_count(loaded) == lion_parameter_count(lion)
    for key, (module, attr) in prunable_weights(loaded).items():
        ref_module, _ = prunable_weights(lion)[key]
        assert torch.equal(getattr(module, f"{attr}_mask"), getattr(ref_module, f"{attr}_mask")), key
    x, _ = batch(99)
    lion.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), lion(x))


def test_training_loops_call_tuning_after_step(monkeypatch):
    """Both loops (tenfold.tuning.training and the lion experiment) re-apply the masks after each step."""
    from tenfold.tuning.training import train_tuned

    lion = tiny_lion()
    calls = []
    monkeypatch.setattr(lion, "tuning_after_step", lambda: calls.append(1))
    x, y = batch(0)
    train_tuned(lion, (x, y), epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, generator=torch.Generator())
    assert len(calls) == 2
