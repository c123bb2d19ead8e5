"""Spiking networks: shapes, per-step BN, shared dropout masks, weight standardization, memory vs T."""

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.snn import reset_states
from tenfold.snn.networks import (NFSpikingResNet34, ScaledWSConv2d, SpikingMLP, SpikingPreActResNet18,
                                  SpikingVGG, StepDropout)
from tenfold.snn.profile import peak_saved_bytes
from tenfold.snn.train import SNNTrainer


@pytest.mark.parametrize("make, x", [
    (lambda: SpikingVGG(2, 5, plan=(8, "M", 16), pool_to=2, dropout=0.2), torch.rand(3, 4, 2, 16, 16)),
    (lambda: SpikingPreActResNet18(3, 5, width=4, dropout=0.1), torch.rand(3, 3, 16, 16)),
    (lambda: NFSpikingResNet34(3, 5, width=4, stages=(1, 1, 1, 1)), torch.rand(3, 3, 32, 32)),
])
def test_networks_train_under_every_rule_with_identical_forward(make, x):
    static = x.dim() == 4
    y = torch.tensor([0, 1, 2])
    outs = []
    for rule, k in (("bptt", None), ("sltt", None), ("sltt-k", 2)):
        torch.manual_seed(0)
        model = make()
        trainer = SNNTrainer(model, 4, rule, k, torch.optim.SGD(model.parameters(), lr=0.01), static=static,
                             generator=torch.Generator().manual_seed(0))
        torch.manual_seed(1)  # same dropout masks for every rule
        result = trainer.step(x, y)
        outs.append(result.logits_sum)
        assert outs[-1].shape == (3, 5)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_sltt_memory_is_flat_in_t_and_bptt_grows_linearly():
    x, y = torch.rand(8, 2, 8, 8), torch.zeros(8, dtype=torch.long)
    saved = {}
    for rule in ("bptt", "sltt"):
        for T in (2, 4, 8):
            torch.manual_seed(0)
            model = SpikingVGG(2, 3, plan=(8, "M", 8), pool_to=1)
            saved[rule, T] = peak_saved_bytes(SNNTrainer(model, T, rule), x, y)
    assert saved["sltt", 2] == saved["sltt", 4] == saved["sltt", 8]
    step = saved["bptt", 4] - saved["bptt", 2]
    assert step > 0 and saved["bptt", 8] - saved["bptt", 4] == 2 * step
    assert saved["sltt", 8] < saved["bptt", 8] / 3


def test_step_dropout_shares_its_mask_over_time_and_redraws_after_reset():
    drop = StepDropout(0.5, torch.Generator().manual_seed(0))
    x = torch.ones(4, 100)
    a, b = drop(x), drop(x)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 2.0}
    reset_states(drop)
    assert not torch.equal(drop(x), a)
    drop.eval()
    assert torch.equal(drop(x), x)
    with pytest.raises(ConfigError, match="^dropout="):
        StepDropout(1.0)


def test_scaled_ws_conv_standardizes_each_filter():
    conv = ScaledWSConv2d(3, 4, 3)
    w = conv.standardized_weight().detach()
    fan_in = 27
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6)
    assert torch.allclose(w.var(dim=(1, 2, 3), unbiased=False) * fan_in, torch.ones(4), rtol=1e-3)


def test_per_step_batchnorm_uses_that_steps_statistics():
    model = SpikingVGG(2, 3, plan=(4,), pool_to=1)
    bn = model.features[1]
    seen = []
    bn.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    trainer = SNNTrainer(model, 2, "sltt", static=False)
    x = torch.rand(6, 2, 2, 4, 4)
    x[:, 1] *= 5  # the second frame has a very different scale
    trainer.gradients(x, torch.zeros(6, dtype=torch.long))
    for out in seen:  # normalized with its own step's batch statistics
        assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_mlp_rejects_empty_hidden():
    with pytest.raises(ConfigError, match="^hidden="):
        SpikingMLP(4, [])
