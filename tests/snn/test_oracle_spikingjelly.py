"""Oracle: our BPTT and SLTT neurons against SpikingJelly 2.0.0 (optional `oracles` extra).

Install: ``pip install --no-deps spikingjelly==2.0.0 && pip install loguru`` (no-deps keeps our torch).
Spec snn.md 1.5 check 7.
"""

import copy

import pytest
import torch

sj = pytest.importorskip("spikingjelly.activation_based.neuron")
from spikingjelly.activation_based import functional, surrogate  # noqa: E402

from tenfold.snn import LIFNeuron  # noqa: E402
from tenfold.snn.loss import per_step_loss  # noqa: E402

T, B, N_IN, N_HID, C = 6, 32, 20, 40, 5


def sj_kwargs(tau):
    return dict(tau=tau, decay_input=False, v_reset=None, surrogate_function=surrogate.PiecewiseQuadratic(1.0))


def make_layers(seed=0):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(N_HID, N_IN, generator=g, dtype=torch.float64) * 0.6
    w2 = torch.randn(C, N_HID, generator=g, dtype=torch.float64) * 0.3
    x = torch.rand(T, B, N_IN, generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(0, C, (B,), generator=g)
    return w1, w2, x, y


@pytest.mark.parametrize("tau", [1.1, 2.0])
def test_bptt_matches_spikingjelly_multistep_lifnode(tau):
    w1, w2, x, y = make_layers()
    grads, spikes = [], []
    for impl in ("ours", "sj"):
        a, b = w1.clone().requires_grad_(), w2.clone().requires_grad_()
        if impl == "ours":
            neuron = LIFNeuron(tau=tau, temporal="bptt")
            s = torch.stack([neuron(x[t] @ a.T) for t in range(T)])
        else:
            neuron = sj.LIFNode(step_mode="m", **sj_kwargs(tau))
            s = neuron(x @ a.T)
            functional.reset_net(neuron)
        loss = sum(per_step_loss(s[t] @ b.T, y) for t in range(T)) / T
        loss.backward()
        grads.append((a.grad, b.grad))
        spikes.append(s.detach())
    assert 0.05 < spikes[0].mean() < 0.6
    assert torch.equal(spikes[0], spikes[1])
    for ours, theirs in zip(*grads):
        assert (ours - theirs).abs().max().item() <= 1e-6 * max(1.0, theirs.abs().max().item())


@pytest.mark.parametrize("tau", [1.1, 2.0])
def test_sltt_matches_spikingjelly_slttlifnode(tau):
    w1, w2, x, y = make_layers(1)
    grads, spikes = [], []
    for impl in ("ours", "sj"):
        a, b = w1.clone().requires_grad_(), w2.clone().requires_grad_()
        neuron = LIFNeuron(tau=tau, temporal="sltt") if impl == "ours" else sj.SLTTLIFNode(**sj_kwargs(tau))
        out = []
        for t in range(T):  # per-step backward, as in the SLTT loop
            s = neuron(x[t] @ a.T)
            (per_step_loss(s @ b.T, y) / T).backward()
            out.append(s.detach())
        grads.append((a.grad.clone(), b.grad.clone()))
        spikes.append(torch.stack(out))
    assert torch.equal(spikes[0], spikes[1])
    for ours, theirs in zip(*grads):
        assert (ours - theirs).abs().max().item() <= 1e-12 * max(1.0, theirs.abs().max().item())


def test_spikingjelly_defaults_differ_so_arguments_must_be_explicit():
    """SLTTLIFNode's defaults (tau=2, decay_input, hard reset, Sigmoid) give other spikes than our preset."""
    _, _, x, _ = make_layers(2)
    ours = LIFNeuron(tau=2.0)
    default = sj.SLTTLIFNode()
    a = torch.stack([ours(x[t] * 0.8) for t in range(T)])
    b = torch.stack([default(copy.deepcopy(x[t]) * 0.8) for t in range(T)])
    assert not torch.equal(a, b)
