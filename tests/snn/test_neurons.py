"""Exact math of the LIF neuron and the surrogates (spec snn.md 1.5 checks 2-3) and their bad input."""

import math

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.snn import SURROGATES, LIFNeuron, reset_states, run_steps, set_temporal, spike, surrogate_grad


def test_constant_input_known_membrane_values():
    neuron = LIFNeuron(tau=2.0)
    us, ss = [], []
    for _ in range(5):
        ss.append(neuron(torch.tensor([0.6], dtype=torch.float64)).item())
        us.append(neuron.u.item())
    assert us == pytest.approx([0.6, 0.9, 1.05, 0.625, 0.9125], abs=1e-12)
    assert ss == [0.0, 0.0, 1.0, 0.0, 0.0]


def test_if_neuron_is_tau_infinity_and_spide_reset():
    neuron = LIFNeuron(tau=math.inf, u_rest=-1.0)
    s = run_steps(neuron, torch.full((4, 1), 0.7, dtype=torch.float64))
    # IF with reset by v_th - u_rest = 2: u = 0.7, 1.4 (spike), 0.1, 0.8
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert neuron.u.item() == pytest.approx(0.8)


def test_triangle_surrogate_known_values():
    x = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], requires_grad=True)
    spike(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert spike(torch.tensor([-1e-6, 0.0, 1e-6])).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", list(SURROGATES))
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_surrogates_integrate_to_one_and_peak_at_threshold(name, width):
    x = torch.linspace(-60, 60, 1_200_001, dtype=torch.float64)
    g = surrogate_grad(x, name, width)
    area = torch.trapezoid(g, x).item()
    assert area == pytest.approx(1.0, abs=1e-2 if name == "atan" else 1e-3)
    assert g[len(x) // 2].item() == pytest.approx(g.max().item())  # largest at the threshold
    assert g[0].item() < 1e-3 * g.max().item()


def test_surrogate_backward_matches_surrogate_grad():
    x = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    for name in SURROGATES:
        (gx,) = torch.autograd.grad(spike(x, name, 0.7).sum(), x)
        assert torch.equal(gx, surrogate_grad(x.detach(), name, 0.7))


def test_sltt_detaches_state_and_bptt_keeps_it():
    x = torch.full((3, 2), 0.8, requires_grad=True)
    for temporal, expect_graph in (("bptt", True), ("sltt", False)):
        neuron = LIFNeuron(tau=1.1, temporal=temporal)
        neuron(x[0])
        assert (neuron.u.grad_fn is not None) == expect_graph


def test_reset_states_and_set_temporal_reach_nested_neurons():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), LIFNeuron(), torch.nn.Sequential(LIFNeuron()))
    model(torch.ones(1, 2))
    set_temporal(model, "sltt")
    reset_states(model)
    neurons = [m for m in model.modules() if isinstance(m, LIFNeuron)]
    assert all(n.u is None and n.temporal == "sltt" for n in neurons)


def test_batch_change_without_reset_is_a_clear_error():
    neuron = LIFNeuron()
    neuron(torch.ones(4, 3))
    with pytest.raises(ConfigError, match="reset_states"):
        neuron(torch.ones(2, 3))


@pytest.mark.parametrize("kwargs, field", [
    ({"tau": 0.5}, "tau"), ({"tau": float("nan")}, "tau"), ({"v_th": 0.0}, "v_th"), ({"v_th": -1.0}, "v_th"),
    ({"surrogate": "relu"}, "surrogate"), ({"width": 0.0}, "width"), ({"temporal": "online"}, "temporal"),
])
def test_bad_neuron_arguments_are_one_line_errors(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field}=") as info:
        LIFNeuron(**kwargs)
    assert "\n" not in str(info.value)
