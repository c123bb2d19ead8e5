"""Spiking networks: shapes, per-step BN, shared dropout masks, weight standardization, memory vs T."""

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.snn import reset_states
from tenfold.snn import LIFNeuron
from tenfold.snn.networks import (NFSpikingResNet34, NFSpikingResNet50, NFSpikingResNet101, ScaledWSConv2d,
                                  SpikingMLP, SpikingPreActResNet18, SpikingVGG, StepDropout)
from tenfold.snn.profile import peak_saved_bytes
from tenfold.snn.train import SNNTrainer


@pytest.mark.parametrize("make, x", [
    (lambda: SpikingVGG(2, 5, plan=(8, "M", 16), pool_to=2, dropout=0.2), torch.rand(3, 4, 2, 16, 16)),
    (lambda: SpikingPreActResNet18(3, 5, width=4, dropout=0.1), torch.rand(3, 3, 16, 16)),
    (lambda: NFSpikingResNet34(3, 5, width=4, stages=(1, 1, 1, 1)), torch.rand(3, 3, 32, 32)),
    (lambda: NFSpikingResNet50(3, 5, width=4, stages=(1, 1, 1, 1)), torch.rand(3, 3, 32, 32)),
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
    # the official code standardizes with torch.var's default, the unbiased variance
    assert torch.allclose(w.var(dim=(1, 2, 3), unbiased=True) * fan_in, torch.ones(4), rtol=1e-3)
    assert not torch.allclose(w.var(dim=(1, 2, 3), unbiased=False) * fan_in, torch.ones(4), rtol=1e-2)


def count(model):
    return sum(p.numel() for p in model.parameters())


# parameter counts of the official definitions (qymeng94/SLTT models/*.py), counted by instantiating them
# with an identity neuron: spiking_vgg11_bn(c_in=2), spiking_resnet18, spiking_nfresnet34/50/101
OFFICIAL_PARAMETERS = [
    (lambda: SpikingVGG(2, 10), 9_476_298),             # DVS-CIFAR10
    (lambda: SpikingVGG(2, 11), 9_501_387),             # DVS128 Gesture
    (lambda: SpikingPreActResNet18(3, 10), 11_176_906),  # CIFAR-10
    (lambda: SpikingPreActResNet18(3, 100), 11_223_076),  # CIFAR-100
    (lambda: NFSpikingResNet34(3, 1000), 21_797_688),
    (lambda: NFSpikingResNet50(3, 1000), 25_557_048),
    (lambda: NFSpikingResNet101(3, 1000), 44_549_193),
]


@pytest.mark.parametrize("make, expected", OFFICIAL_PARAMETERS)
def test_parameter_counts_equal_the_official_models(make, expected):
    with torch.device("meta"):
        assert count(make()) == expected


def test_vgg11_layers_and_init_as_the_official():
    model = SpikingVGG(2, 10)
    pools = [m for m in model.features if isinstance(m, torch.nn.AvgPool2d)]
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(pools) == 5 and len(convs) == 8 and all(c.bias is not None and not c.bias.any() for c in convs)
    with torch.no_grad():  # a 48x48 DVS-CIFAR10 frame is 1x1 before the 7x7 adaptive pool, as officially
        assert model.features(torch.zeros(1, 2, 48, 48)).shape == (1, 512, 1, 1)
    w = convs[3].weight  # Kaiming normal, fan_out: std sqrt(2 / (out * 9))
    assert w.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.05) and not model.head.bias.any()


def test_resnet18_stem_has_no_bias_and_head_bias_is_zero():
    model = SpikingPreActResNet18(3, 10)
    assert model.stem.bias is None and not model.head.bias.any()
    assert sum(isinstance(m, LIFNeuron) for m in model.modules()) == 17


def test_nf_resnets_avgpool_stem_no_extra_lif_and_official_init():
    model = NFSpikingResNet34(3, 10, width=8)
    assert isinstance(model.pool, torch.nn.AvgPool2d) and (model.pool.kernel_size, model.pool.stride,
                                                            model.pool.padding) == (3, 2, 1)
    assert sum(isinstance(m, LIFNeuron) for m in model.modules()) == 2 * 16  # two per basic block, none after
    assert sum(isinstance(m, LIFNeuron) for m in NFSpikingResNet50(3, 10, width=8).modules()) == 3 * 16
    assert not model.head.weight.any() and model.head.bias.any()  # official: only the weight is zeroed
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, ScaledWSConv2d))
    betas = [b.beta ** 2 for b in model.blocks]  # expected variances: reset to 1 + a^2 after a projection
    a2 = 0.2 ** 2
    assert betas[:4] == pytest.approx([1, 1 + a2, 1 + 2 * a2, 1 + 3 * a2])
    assert betas[4:6] == pytest.approx([1 + a2, 1 + 2 * a2])  # block 3 opens stage 2 with a projection


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
