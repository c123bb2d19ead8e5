"""Multi-step BPTT (tenfold.snn.multistep) against the one-step loop: same spikes, same gradients."""

import pytest
import torch
from torch import nn

from tenfold.snn.multistep import lif_multistep, multistep_logits, supports_multistep
from tenfold.snn.networks import SpikingMLP, SpikingVGG
from tenfold.snn.neurons import LIFNeuron, run_steps
from tenfold.snn.train import SNNTrainer, parameter_grads


def _pair(make, dtype=torch.float64):
    torch.manual_seed(1)
    one, multi = make().to(dtype), make().to(dtype)
    multi.load_state_dict(one.state_dict())
    return one, multi


def _compare(make, x, y, T, static, **kw):
    one, multi = _pair(make)
    a = SNNTrainer(one, T, "bptt", static=static, **kw)
    a.multistep = False
    b = SNNTrainer(multi, T, "bptt", static=static, **kw)
    ra, rb = a.gradients(x.double(), y), b.gradients(x.double(), y)
    assert torch.equal(ra.logits_sum, rb.logits_sum)  # same forward ops: bit-identical outputs
    assert rb.backward_calls == 1 and ra.loss == pytest.approx(rb.loss, rel=1e-12)
    ga, gb = parameter_grads(one), parameter_grads(multi)
    scale = max(float(g.abs().max()) for g in ga.values())
    assert scale > 1e-3  # the batch makes every layer learn
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], rtol=0, atol=1e-12 * scale, msg=name)
    # the network state and the running statistics agree too
    for (n, p), (_, q) in zip(one.state_dict().items(), multi.state_dict().items()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-12, msg=n)


@pytest.mark.parametrize("tau, u_rest", [(2.0, 0.0), (1.1, 0.0), (4.0, -1.0)])
def test_multistep_lif_equals_the_one_step_chain(tau, u_rest):
    g = torch.Generator().manual_seed(0)
    currents = (1.5 * torch.randn(7, 5, 9, generator=g, dtype=torch.float64)).requires_grad_()
    grad = torch.randn(7, 5, 9, generator=g, dtype=torch.float64)
    neuron = LIFNeuron(tau, u_rest=u_rest)
    s1 = run_steps(neuron, currents)
    (g1,) = torch.autograd.grad(s1, currents, grad)
    s2 = lif_multistep(neuron, currents)
    (g2,) = torch.autograd.grad(s2, currents, grad)
    assert torch.equal(s1, s2) and 0 < float(s1.detach().mean()) < 1
    torch.testing.assert_close(g2, g1, rtol=0, atol=1e-12)


def test_bptt_mlp_static_input_multistep_equals_one_step():
    x = 4 * torch.rand(32, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(32) % 10
    _compare(lambda: SpikingMLP(64, (32, 32), 10, tau=2.0), x, y, 6, True)


def test_bptt_conv_bn_dropout_events_multistep_equals_one_step():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 7, 2, 12, 12, generator=g) < 0.3).float()
    y = torch.arange(16) % 10

    def make():
        return SpikingVGG(2, 10, plan=(8, "M", 16), pool_to=2, dropout=0.2,
                          generator=torch.Generator().manual_seed(3), tau=2.0)

    _compare(make, x, y, 6, False)  # 7 frames, T = 6: the first six


def test_custom_loss_and_mse_target_on_the_multistep_path():
    x = 4 * torch.rand(16, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    _compare(lambda: SpikingMLP(64, (24,), 10, tau=2.0), x, y, 4, True, mse_target="onehot", lam_l=0.3)
    _compare(lambda: SpikingMLP(64, (24,), 10, tau=2.0), x, y, 4, True,
             loss=lambda o, t: torch.nn.functional.cross_entropy(o, t, label_smoothing=0.1))


def test_unsupported_networks_fall_back_to_the_one_step_loop():
    model = nn.Sequential(nn.Linear(8, 8), LIFNeuron(2.0), nn.Dropout(0.5), nn.Linear(8, 3))
    assert not supports_multistep(model)
    assert multistep_logits(model, torch.rand(4, 8), 3, True) is None
    assert supports_multistep(nn.Sequential(nn.Linear(8, 8), LIFNeuron(2.0), nn.Linear(8, 3)))
    hooked = SpikingMLP(8, (8,), 3)
    hooked.head.register_forward_hook(lambda *a: None)
    assert not supports_multistep(hooked)
    trainer = SNNTrainer(model, 3, "bptt")  # still trains, one step at a time
    result = trainer.gradients(torch.rand(4, 8), torch.tensor([0, 1, 2, 0]))
    assert result.backward_calls == 1 and all(p.grad is not None for p in model.parameters())
