"""Break each mechanism on purpose and see the test that guards it fail (issue: controls that catch a
partly wrong gradient). Each test runs the guard on the real code (it passes) and on a mutant (it must
fail): a guard that cannot tell them apart would let the bug through.

- SLTT / SLTT-K without the 1/T rescale of the per-step loss: caught by an independent reference
  ``(1/T) sum_{t in drawn} l_t`` back-propagated once with detached membranes.
- BPTT's temporal factor without the reset path (eps = lam instead of lam (1 - V sigma')): caught by
  the comparison with the one-step autograd chain (and the SpikingJelly oracle in test_oracle_spikingjelly).
- SPIDE's adjoint with a wrong mask (the source layer's instead of the target's): caught by the
  finite-difference test of ``adjoint_operators`` (tests/snn/test_spide_adjoint_fd.py); the
  spike-vs-exact cosine cannot see it, since both backward modes share ``adjoint_operators``.
"""

import pytest
import torch

from tenfold.data import digits
from tenfold.snn import multistep
from tenfold.snn.loss import per_step_loss
from tenfold.snn.networks import SpikingMLP
from tenfold.snn.neurons import LIFNeuron, reset_states, run_steps, temporal_mode
from tenfold.snn.train import SNNTrainer, parameter_grads

T = 6


@pytest.fixture(scope="module")
def batch():
    data = digits("train", seed=0, flatten=True)
    return data.x[:32].double(), data.y[:32]


def make_model():
    torch.manual_seed(0)
    model = SpikingMLP(64, (32, 32), 10, tau=2.0).double()
    with torch.no_grad():
        for layer in model.body:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(3.0)
    return model


def reference_sltt(x, y, steps):
    """``(1/T) sum_{t in steps} l(o[t], y)`` with every membrane detached, one backward: SLTT(-K) by its
    definition, written without the trainer."""
    model = make_model()
    with temporal_mode(model, "sltt"):
        reset_states(model)
        loss = 0
        for t in range(T):
            o = model(x)
            if t in steps:
                loss = loss + per_step_loss(o, y)
        (loss / T).backward()
        reset_states(model)
    return parameter_grads(model)


class NoRescale(SNNTrainer):
    """Mutant: SLTT's per-step loss not divided by T."""

    def _loss(self, logits, y, scale=True):
        return super()._loss(logits, y, scale=False)


def _matches(g, ref):
    return all(torch.allclose(g[n], ref[n], rtol=1e-9, atol=1e-12) for n in ref)


@pytest.mark.parametrize("rule, k", [("sltt", None), ("sltt-k", 2)])
def test_missing_1_over_T_rescale_is_caught(batch, rule, k):
    x, y = batch
    results = {}
    for cls in (SNNTrainer, NoRescale):
        model = make_model()
        result = cls(model, T, rule, k, generator=torch.Generator().manual_seed(5)).gradients(x, y)
        results[cls] = _matches(parameter_grads(model), reference_sltt(x, y, set(result.grad_steps)))
    assert results[SNNTrainer] and not results[NoRescale]


def _no_reset_backward(ctx, grad_s):
    """Mutant of the multi-step LIF backward: eps = lam (the reset path's term -lam V sigma' dropped)."""
    (u_seq,) = ctx.saved_tensors
    grad_i = torch.empty_like(u_seq)
    g_next = None
    for t in range(u_seq.shape[0] - 1, -1, -1):
        g = multistep.surrogate_of_membrane(u_seq[t], ctx.v_th, ctx.surrogate, ctx.width).mul_(grad_s[t])
        if g_next is not None:
            g.add_(g_next, alpha=ctx.lam)
        grad_i[t] = g
        g_next = grad_i[t]
    return grad_i, None, None, None, None, None


def _lif_guard():
    """The guard: multi-step LIF gradients equal the one-step autograd chain (float64)."""
    g = torch.Generator().manual_seed(0)
    currents = (1.5 * torch.randn(6, 4, 8, generator=g, dtype=torch.float64)).requires_grad_()
    grad = torch.randn(6, 4, 8, generator=g, dtype=torch.float64)
    neuron = LIFNeuron(2.0)
    (one,) = torch.autograd.grad(run_steps(neuron, currents), currents, grad)
    (multi,) = torch.autograd.grad(multistep.lif_multistep(neuron, currents), currents, grad)
    return torch.allclose(multi, one, rtol=0, atol=1e-12)


def test_bptt_without_the_reset_path_term_is_caught(monkeypatch):
    assert _lif_guard()
    monkeypatch.setattr(multistep._MultiStepLIF, "backward", staticmethod(_no_reset_backward))
    assert not _lif_guard()
